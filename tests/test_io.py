import json

import pytest

from oxa.errors import RecordError
from oxa.io import ReadStats, ResumableWriter, read_records, write_records
from oxa.records import Fields, get_field, record_id


def test_jsonl_roundtrip_keeps_fields_and_nan_becomes_null(tmp_path):
    path = tmp_path / "a.jsonl"
    write_records(path, [{"id": 1, "x": float("nan"), "y": [1, 2]}, {"id": 2, "x": 0.5}])
    assert read_records(path) == [{"id": 1, "x": None, "y": [1, 2]}, {"id": 2, "x": 0.5}]
    assert not list(tmp_path.glob(".*tmp"))


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n[1, 2]\n{"a": 3}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:3: malformed record"):
        read_records(path)
    stats = ReadStats()
    assert read_records(path, skip_bad=True, stats=stats) == [{"a": 1}, {"a": 3}]
    assert stats.skipped == 2 and stats.read == 2 and "bad.jsonl:4" in stats.reasons[1]


def test_json_array_and_parquet(tmp_path, shared_data):
    recs = read_records(shared_data / "benchmarks" / "aime24.json")
    assert recs == json.loads((shared_data / "benchmarks" / "aime24.json").read_text(encoding="utf-8")) and len(recs) == 30
    rl = read_records(shared_data / "rl" / "aime24-val.parquet")
    assert len(rl) == 30 and rl[0]["prompt"][0]["role"] == "user"
    write_records(tmp_path / "x.parquet", recs[:3])
    assert read_records(tmp_path / "x.parquet") == recs[:3]


def test_missing_field_names_field_and_present_fields():
    with pytest.raises(RecordError, match=r"f.jsonl:7: field 'query' is missing \(fields present: a, b\)"):
        get_field({"a": 1, "b": 2}, "query", where="f.jsonl:7")
    assert record_id({"q": 1}, Fields(), 5) == "5"


def test_resumable_writer_resumes_without_duplicates(tmp_path):
    out = tmp_path / "out.jsonl"
    w = ResumableWriter(out)
    w.add([(0, {"v": 0}), (2, {"v": 2})])
    w.close()
    with open(w.path, "a") as f:  # a torn line from a killed run
        f.write('{"_i": 1, "v"')
    w2 = ResumableWriter(out)
    assert sorted(w2.done) == [0, 2]
    w2.add([(1, {"v": 1})])
    recs = w2.finish(3)
    assert recs == [{"v": 0}, {"v": 1}, {"v": 2}]
    assert [json.loads(line)["v"] for line in out.read_text().splitlines()] == [0, 1, 2]
    assert not w2.path.exists()


@pytest.mark.parametrize("torn", [b'{"_i": 1, "v"', b'{"_i": 1, "v": "caf\xc3', b'{"_i": 1, "v": 1}',
                                  b'{"_i": 1, "v": "' + b"x" * 200_000])
def test_a_record_appended_after_a_torn_line_survives_the_next_resume(tmp_path, torn):
    """A kill mid-write leaves a last line without its newline (here cut inside JSON, inside a UTF-8
    character, just before the newline, or 200 kB into a long response). The next run's first record must start on a line of its
    own, so a third run (or the merge of another rank's part) reads it back."""
    out = tmp_path / "out.jsonl"
    w = ResumableWriter(out)
    w.add([(0, {"v": "é"})])
    w.close()
    with open(w.path, "ab") as f:
        f.write(torn)
    w2 = ResumableWriter(out)
    w2.add([(2, {"v": 2})])
    w2.close()
    reloaded = ResumableWriter.load(w2.path)  # what a re-run, or rank 0 merging this part, sees
    assert 2 in reloaded and reloaded[0] == {"v": "é"}
    assert all(json.loads(line) for line in w2.path.read_bytes().splitlines())  # only whole records remain
