"""Benchmark loaders: every public file by name, records from any file, data-dir lookup, registration."""

from __future__ import annotations

import json
import shutil

import pytest

from oxa import benchmarks
from oxa.benchmarks import (PAPER_BENCHMARKS, benchmark_names, gsm8k_final_answer, load_benchmark,
                            register_benchmark, strip_suffix)
from oxa.errors import OxaError
from oxa.prompting import PAPER_SUFFIX
from oxa.records import Fields

SIZES = {"aime24": 30, "aime25": 30, "hmmt25": 30, "cmimc25": 40, "brumo25": 30, "minerva": 272, "math500": 500,
         "gsm8k": 1319, "gsm8k-train": 7473, "deepscaler": 9998, "aime24-val": 30}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_named_benchmark_loads_with_id_query_answer(shared_data, name):
    records = load_benchmark(name, data_dir=shared_data)
    assert len(records) == SIZES[name]
    assert [r["id"] for r in records] == [f"{name}-{i}" for i in range(len(records))]
    for r in records:
        assert isinstance(r["query"], str) and r["query"].strip()
        answers = r["answer"] if name == "minerva" else [r["answer"]]
        assert answers and all(isinstance(a, str) and a and a == a.strip() for a in answers)
        assert not r["query"].endswith(PAPER_SUFFIX)


def test_json_benchmarks_keep_original_fields_and_answers(shared_data):
    raw = json.loads((shared_data / "benchmarks" / "minerva.json").read_text(encoding="utf-8"))
    records = load_benchmark("minerva", data_dir=shared_data)
    assert records[0]["problem"] == records[0]["query"] == raw[0]["problem"]
    assert records[0]["solution"] == raw[0]["solution"]
    assert [r["answer"] for r in records] == [[a.strip() for a in row["answer"]] for row in raw]
    assert any(a.endswith("\n") for row in raw for a in row["answer"])  # what the stripping is for


def test_verl_files_strip_the_suffix_and_read_ground_truth(shared_data):
    val = load_benchmark("aime24-val", data_dir=shared_data)
    aime = load_benchmark("aime24", data_dir=shared_data)
    # the RL validation set is AIME24 in verl form: same problems, same golds
    assert [r["answer"] for r in val] == [r["answer"] for r in aime]
    assert [r["query"] for r in val] == [r["prompt"][0]["content"][: -len(PAPER_SUFFIX)] for r in val]
    assert [r["answer"] for r in val] == [r["reward_model"]["ground_truth"] for r in val]
    assert strip_suffix("q" + PAPER_SUFFIX) == "q" and strip_suffix("q") == "q"


def test_gsm8k_answers_are_the_numbers_after_hashes(shared_data):
    records = load_benchmark("gsm8k-train", data_dir=shared_data)
    with open(shared_data / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
        raw = [json.loads(line) for line in f]
    expected = [row["answer"].split("####")[-1].strip().replace(",", "") for row in raw]
    assert [r["answer"] for r in records] == expected
    assert [r["solution"] for r in records] == [row["answer"] for row in raw]
    assert any("," in row["answer"].split("####")[-1] for row in raw)
    assert gsm8k_final_answer("so\n#### 1,234,567") == "1234567" and gsm8k_final_answer("no marker") is None


def test_paper_benchmarks_are_registered():
    assert set(PAPER_BENCHMARKS) | {"math500", "gsm8k", "gsm8k-train", "deepscaler", "aime24-val"} <= set(benchmark_names())


def test_any_record_file_with_field_options(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"uid": 7, "q": "1+1?", "gold": " 2 "}, {"q": "2+2?", "gold": ["4", "4.0"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    records = load_benchmark(path, fields=Fields(id="uid", query="q", answer="gold"), limit=5)
    assert records == [{**rows[0], "id": "7", "query": "1+1?", "answer": "2"},
                       {**rows[1], "id": "mine-1", "query": "2+2?", "answer": ["4", "4.0"]}]
    with pytest.raises(OxaError, match=r"mine.jsonl: record 1: no query field .*--query-field"):
        load_benchmark(path)


def test_public_shapes_are_recognised_by_path(shared_data):
    records = load_benchmark(shared_data / "gsm8k" / "test.jsonl", limit=3)
    assert [r["id"] for r in records] == ["test-0", "test-1", "test-2"] and records[0]["answer"] == "18"
    verl = load_benchmark(shared_data / "rl" / "aime24-val.parquet", limit=2)
    assert verl[0]["answer"] == "204" and not verl[0]["query"].endswith(PAPER_SUFFIX)


def test_data_dir_argument_env_and_errors(tmp_path, monkeypatch, shared_data):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(shared_data / "benchmarks" / "aime25.json", tmp_path / "benchmarks" / "aime25.json")
    monkeypatch.setenv(benchmarks.DATA_DIR_ENV, str(tmp_path))
    assert len(load_benchmark("aime25", limit=4)) == 4
    with pytest.raises(OxaError, match=rf"benchmarks/aime24.json not found \(looked in {tmp_path}.*OXA_DATA_DIR"):
        load_benchmark("aime24")
    assert len(load_benchmark("aime24", data_dir=shared_data)) == 30  # the argument wins over the env
    with pytest.raises(OxaError, match=r"unknown benchmark 'aime2O'.*known names: .*aime24, .*minerva"):
        load_benchmark("aime2O")


def test_data_dir_defaults_to_shared_data_beside_cwd_or_repo(tmp_path, monkeypatch, shared_data):
    monkeypatch.delenv(benchmarks.DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared/data from here does not exist: the repository's is used
    assert len(load_benchmark("hmmt25")) == 30
    work = tmp_path / "project"
    (tmp_path / "shared" / "data" / "benchmarks").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "benchmarks" / "hmmt25.json").write_text(
        json.dumps([{"problem": "p", "answer": "1"}]), encoding="utf-8")
    work.mkdir()
    monkeypatch.chdir(work)
    assert [r["answer"] for r in load_benchmark("hmmt25")] == ["1"]


def test_register_benchmark_by_name(monkeypatch):
    monkeypatch.setattr(benchmarks, "_REGISTRY", dict(benchmarks._REGISTRY))
    seen = []

    def loader(data_dir):
        seen.append(data_dir)
        return [{"id": f"toy-{i}", "query": f"{i}+1?", "answer": str(i + 1)} for i in range(5)]

    register_benchmark("toy", loader)
    assert [r["answer"] for r in load_benchmark("toy", limit=2)] == ["1", "2"] and seen == [None]
    register_benchmark("broken", lambda data_dir: [{"id": "x", "query": "q"}])
    with pytest.raises(OxaError, match="benchmark 'broken': record 1 has no answer"):
        load_benchmark("broken")
