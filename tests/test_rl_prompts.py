"""RL prompts from data set names, the synthetic world, record files and verl parquet."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oxa.errors import OxaError
from oxa.prompting import PAPER_SUFFIX
from oxa.records import Fields
from oxa.rl.prompts import load_prompts
from oxa.synth.world import WorldConfig, build_world, write_world


def test_verl_parquet_queries_lose_the_suffix_once(shared_data):
    """The authors' DeepScaleR file: prompt = [user: query + suffix], gold in reward_model.ground_truth."""
    raw = pq.read_table(shared_data / "rl" / "deepscaler-10k.parquet").slice(0, 50).to_pylist()
    for spec in ("deepscaler", shared_data / "rl" / "deepscaler-10k.parquet"):
        prompts = load_prompts(spec, limit=50, data_dir=shared_data)
        assert len(prompts) == 50
        assert [p["query"] + PAPER_SUFFIX for p in prompts] == [r["prompt"][0]["content"] for r in raw]
        assert [p["answer"] for p in prompts] == [r["reward_model"]["ground_truth"] for r in raw]
        assert all(PAPER_SUFFIX not in p["query"] for p in prompts)
        assert prompts[0]["extra_info"] == raw[0]["extra_info"]  # other fields kept
    assert len({p["id"] for p in prompts}) == 50


def test_named_benchmark_with_list_golds(shared_data):
    prompts = load_prompts("minerva", limit=5, data_dir=shared_data)
    assert all(isinstance(p["answer"], list) and p["answer"] for p in prompts)


def test_synth_rl_split(tmp_path):
    """synth-rl: the world directory's rl.jsonl, the directory itself, the file, or the default world."""
    cfg = WorldConfig(seed=3, n_queries=20, rl_prompts=15, benchmark_per_difficulty=2)
    write_world(cfg, tmp_path)
    expected = [json.loads(line) for line in (tmp_path / "rl.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(expected) == 15
    for spec, kw in (("synth-rl", {"data_dir": tmp_path}), (tmp_path, {}), (tmp_path / "rl.jsonl", {})):
        prompts = load_prompts(spec, **kw)
        assert [(p["id"], p["query"], p["answer"]) for p in prompts] == [(r["id"], r["query"], r["answer"]) for r in expected]
    default = load_prompts("synth-rl", limit=10)
    assert [p["id"] for p in default] == [r["id"] for r in build_world(WorldConfig())["rl"][:10]]


def test_record_files_through_fields(tmp_path):
    rows = [{"uid": "a", "question_text": "What is 1+1?" + PAPER_SUFFIX, "gold": 2},
            {"uid": "b", "question_text": "Name a root of x^2-1.", "gold": ["1", "-1"]}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([rows[0]]), parquet)
    fields = Fields(id="uid", query="question_text", answer="gold")
    prompts = load_prompts(jsonl, fields=fields)
    assert [(p["id"], p["query"], p["answer"]) for p in prompts] == [
        ("a", "What is 1+1?", 2), ("b", "Name a root of x^2-1.", ["1", "-1"])]
    assert prompts[0]["question_text"] == rows[0]["question_text"]  # original fields kept as they were
    assert [p["query"] for p in load_prompts(parquet, fields=fields)] == ["What is 1+1?"]
    assert len(load_prompts(jsonl, fields=fields, limit=1)) == 1


@pytest.mark.parametrize("row, message", [
    ({"query": "q"}, r"p\.jsonl: record 2: no answer field"),
    ({"answer": "1"}, r"p\.jsonl: record 2: no query field"),
    ({"query": "q", "answer": ""}, r"p\.jsonl: record 2 has no answer"),
    ({"query": "q", "answer": True}, r"p\.jsonl: row 2: field 'answer' \(the gold answer\): .*bool"),
    ({"query": "   ", "answer": "1"}, r"p\.jsonl: row 2: field 'query' must be non-empty text"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, row, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"query": "fine", "answer": "1"}) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(OxaError, match=message):
        load_prompts(path)


def test_unknown_spec_and_non_world_directory(tmp_path):
    with pytest.raises(OxaError, match="unknown benchmark 'nope'"):
        load_prompts("nope")
    with pytest.raises(OxaError, match="not a synthetic world"):
        load_prompts(tmp_path)
