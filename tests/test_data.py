"""oxa.data: the shipped sets against their public originals, the wheel that carries them, named sets,
hub specs and dataset directories through `datasets` (on local files: no network), field mapping."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

import oxa.data.registry as registry
from oxa.data import (DATA_DIR_ENV, PAPER_BENCHMARKS, SHIPPED, HubSpec, benchmark_info, benchmark_key, benchmark_names,
                      gsm8k_final_answer, iter_rows, load_benchmark, pack_shipped, parse_hub_spec, register_benchmark,
                      shipped_rows, spec_name, strip_suffix)
from oxa.data.catalog import shipped_path
from oxa.errors import OxaError
from oxa.prompting import PAPER_SUFFIX
from oxa.records import Fields
from conftest import ROOT

SIZES = {"aime24": 30, "aime25": 30, "hmmt25": 30, "cmimc25": 40, "brumo25": 30, "minerva": 272, "math500": 500,
         "gsm8k": 1319, "aime24-val": 30}
ORIGINALS = {**{n: f"benchmarks/{n}.json" for n in (*PAPER_BENCHMARKS, "math500")}, "gsm8k": "gsm8k/test.jsonl"}


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """`datasets` writes the Arrow files it prepares into its cache: keep them in the test's directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path / "hf-cache"


def _original_rows(shared_data, name: str) -> list[dict]:
    text = (shared_data / ORIGINALS[name]).read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()]


# ------------------------------------------------------------------------------------- shipped sets


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_shipped_set_loads_with_id_query_answer_and_no_data_dir(name, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    records = load_benchmark(name)
    assert len(records) == SIZES[name]
    assert [r["id"] for r in records] == [f"{name}-{i}" for i in range(len(records))]
    for r in records:
        assert isinstance(r["query"], str) and r["query"].strip() and not r["query"].endswith(PAPER_SUFFIX)
        answers = r["answer"] if name == "minerva" else [r["answer"]]
        assert answers and all(isinstance(a, str) and a and a == a.strip() for a in answers)


def test_shipped_sets_hold_the_originals_problems_and_answers(shared_data):
    """Row for row against the unchanged public files, parsed here with json alone."""
    for name in ORIGINALS:
        raw = _original_rows(shared_data, name)
        records = load_benchmark(name)
        assert [r["query"] for r in records] == [row.get("problem", row.get("question")) for row in raw], name
        if name == "gsm8k":
            expected = [row["answer"].split("####")[-1].strip().replace(",", "") for row in raw]
        elif name == "minerva":
            expected = [[a.strip() for a in row["answer"]] for row in raw]
        else:
            expected = [row["answer"].strip() for row in raw]
        assert [r["answer"] for r in records] == expected, name
    assert any(a.endswith("\n") for row in _original_rows(shared_data, "minerva") for a in row["answer"])
    assert any("," in row["answer"].split("####")[-1] for row in _original_rows(shared_data, "gsm8k"))


def test_pack_rebuilds_the_shipped_files_from_the_originals(tmp_path, shared_data):
    sizes = pack_shipped(shared_data, tmp_path)
    assert sorted(sizes) == sorted(SHIPPED)
    for name in SHIPPED:
        built = (tmp_path / f"{name}.jsonl.gz").read_bytes()
        assert gzip.decompress(built) == gzip.decompress(shipped_path(name).read_bytes()), name
        assert sizes[name] == len(built)
    assert sum(sizes.values()) < 300_000  # what the package carries


def test_the_wheel_carries_the_sets_and_loads_them_outside_the_repository(tmp_path):
    """Build the wheel as pip would and load a benchmark from it, with the repository out of the path."""
    import shutil

    source, wheel_dir = tmp_path / "source", tmp_path / "wheel"  # a copy: the build leaves build/ beside it
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheel_dir), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheel_dir.glob("oxa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"oxa/data/sets/{n}.jsonl.gz" for n in SHIPPED} | {"oxa/data/sets/README.md"} <= names
    code = ("import oxa, sys; from oxa.data import load_benchmark, benchmark_info; r = load_benchmark('hmmt25'); "
            "print(oxa.__file__, len(r), r[0]['answer'], benchmark_info('hmmt25').license, sep='|')")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", DATA_DIR_ENV)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(wheel)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    where, count, answer, license_ = run.stdout.strip().split("|")
    assert where.startswith(str(wheel)) and int(count) == 30
    assert answer == load_benchmark("hmmt25")[0]["answer"] and license_.startswith("CC BY-NC-SA 4.0")


def test_the_sets_readme_and_the_registry_agree():
    """The table a user reads in the package and what `python -m oxa.data` prints say the same."""
    table = (shipped_path("aime24").parent / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): (int(m.group(2)), m.group(3).strip()) for m in
            re.finditer(r"^\| (\w+) \| (\d+) \| [^|]+ \| ([^|]+) \|$", table, re.M)}
    assert sorted(rows) == sorted(SHIPPED)
    for name, info in SHIPPED.items():
        assert rows[name][0] == info.rows == SIZES[name]
        assert info.license.split(" (")[0] in rows[name][1], name
    from oxa.data.__main__ import describe

    text = describe()
    for name in ("aime24", "hmmt25", "minerva", "gsm8k", "deepscaler", "gsm8k-train"):
        assert f"\n{name}: " in f"\n{text}" and benchmark_info(name).license in text


def test_paper_benchmarks_and_the_larger_sets_are_named():
    assert set(PAPER_BENCHMARKS) | {"math500", "gsm8k", "gsm8k-train", "deepscaler", "deepscaler-preview",
                                    "aime24-val"} <= set(benchmark_names())
    assert [benchmark_info(n).location for n in PAPER_BENCHMARKS] == ["shipped"] * 6


# ----------------------------------------------------------------------- sets read from a data directory


def test_rl_validation_set_is_aime24_as_in_its_verl_file(shared_data):
    val = load_benchmark("aime24-val")
    verl = load_benchmark(shared_data / "rl" / "aime24-val.parquet")  # the paper's file, read as a record file
    assert [r["query"] for r in val] == [r["prompt"][0]["content"][: -len(PAPER_SUFFIX)] for r in verl]
    assert [r["answer"] for r in val] == [r["reward_model"]["ground_truth"] for r in verl]
    assert strip_suffix("q" + PAPER_SUFFIX) == "q" and strip_suffix("q") == "q"


def test_deepscaler_reads_the_papers_verl_file_from_the_data_dir(shared_data, monkeypatch):
    import pyarrow.parquet as pq

    records = load_benchmark("deepscaler", data_dir=shared_data)
    table = pq.read_table(shared_data / "rl" / "deepscaler-10k.parquet").to_pylist()
    assert len(records) == 9998 and [r["id"] for r in records[:2]] == ["deepscaler-0", "deepscaler-1"]
    assert [r["answer"] for r in records] == [t["reward_model"]["ground_truth"].strip() for t in table]
    assert [r["query"] + PAPER_SUFFIX for r in records] == [t["prompt"][0]["content"] for t in table]
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(OxaError, match=r"rl/deepscaler-10k.parquet not found \(no data directory given\).*OXA_DATA_DIR"):
        load_benchmark("deepscaler")
    monkeypatch.setenv(DATA_DIR_ENV, str(shared_data))
    assert len(load_benchmark("deepscaler", limit=5)) == 5


def test_gsm8k_train_reads_its_local_mirror_and_else_the_hub(shared_data, monkeypatch, offline):
    records = load_benchmark("gsm8k-train", data_dir=shared_data)
    raw = [json.loads(line) for line in (shared_data / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["answer"] for r in records] == [row["answer"].split("####")[-1].strip().replace(",", "") for row in raw]
    assert [r["solution"] for r in records] == [row["answer"] for row in raw]
    assert gsm8k_final_answer("so\n#### 1,234,567") == "1234567" and gsm8k_final_answer("no marker") is None
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)  # no mirror: the hub, which is out of reach here
    with pytest.raises(OxaError, match=r"^hf:openai/gsm8k/main:train: cannot load this dataset from the Hugging Face hub") as e:
        load_benchmark("gsm8k-train")
    assert "\n" not in str(e.value) and str(e.value).endswith("or put the file gsm8k/train.jsonl in --data-dir / $OXA_DATA_DIR")


# --------------------------------------------------------------------- hub specs and dataset directories


def test_hub_specs_parse_and_print_back():
    cases = {"hf:agentica-org/DeepScaleR-Preview-Dataset": HubSpec("agentica-org/DeepScaleR-Preview-Dataset"),
             "hf:openai/gsm8k/main:test": HubSpec("openai/gsm8k", "main", "test"),
             "hf:openai/gsm8k:train@e53f048": HubSpec("openai/gsm8k", None, "train", "e53f048"),
             "hf:gsm8k": HubSpec("gsm8k")}
    for text, spec in cases.items():
        assert parse_hub_spec(text) == spec and str(spec) == text
    for bad in ("hf:", "hf:a/b/c/d", "hf:a//b", "hf:a/b:", "hf:a/b@"):
        with pytest.raises(OxaError, match=r"hf:ORG/NAME\[/CONFIG\]\[:SPLIT\]\[@REVISION\]"):
            parse_hub_spec(bad)
    assert spec_name("hf:openai/gsm8k/main:test") == "gsm8k-main-test"
    assert spec_name("hf:agentica-org/DeepScaleR-Preview-Dataset") == "DeepScaleR-Preview-Dataset"
    assert benchmark_key("aime24") == "aime24" and benchmark_key("/d/my set.jsonl") == "my_set"


def test_an_unreachable_hub_id_is_a_one_line_error_naming_it(offline):
    with pytest.raises(OxaError) as e:
        load_benchmark("hf:someorg/no-such-set:train")
    message = str(e.value)
    assert message.startswith("hf:someorg/no-such-set:train: cannot load this dataset from the Hugging Face hub (")
    assert "\n" not in message and len(message) < 500


def _parquet_repo(root, splits: dict[str, list[dict]]):
    """A directory laid out as a hub dataset repository: data/<split>-00000-of-00001.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True)
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def test_a_dataset_repository_directory_loads_through_datasets_with_field_mapping(tmp_path, datasets_cache):
    train = [{"uid": f"u{i}", "statement": f"What is {i} + {i}?", "final": str(2 * i)} for i in range(7)]
    test = [{"uid": "t0", "statement": "What is 1 - 1?", "final": "0"}]
    repo = _parquet_repo(tmp_path / "my-set", {"train": train, "test": test})
    fields = Fields(id="uid", query="statement", answer="final")
    records = load_benchmark(f"{repo}:train", fields=fields, limit=5)
    assert records == [{**row, "id": row["uid"], "query": row["statement"], "answer": row["final"]} for row in train[:5]]
    assert load_benchmark(f"{repo}:test", fields=fields)[0]["answer"] == "0"
    assert benchmark_key(f"{repo}:test") == "my-set-test"
    with pytest.raises(OxaError, match=r"my-set: has splits train, test; name one as .*my-set:SPLIT"):
        load_benchmark(repo, fields=fields)
    with pytest.raises(OxaError, match=r"my-set: no split 'dev' \(it has train, test\)"):
        load_benchmark(f"{repo}:dev", fields=fields)
    with pytest.raises(OxaError, match=r"my-set:test: record 1: no query field .*--query-field"):
        load_benchmark(f"{repo}:test")
    assert list(datasets_cache.iterdir())  # it went through datasets' builder, as a hub download does


def test_jsonl_directory_and_save_to_disk_directories(tmp_path, datasets_cache):
    from datasets import Dataset, DatasetDict

    rows = [{"problem": f"p{i}", "answer": [f"{i}", f"{i}.0"]} for i in range(4)]
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [r["answer"] for r in load_benchmark(tmp_path / "jsonl")] == [r["answer"] for r in rows]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    saved = load_benchmark(tmp_path / "saved")
    assert [r["id"] for r in saved] == [f"saved-{i}" for i in range(4)] and saved[3]["query"] == "p3"
    DatasetDict({"test": Dataset.from_list(rows[:2]), "train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_benchmark(f"{tmp_path / 'dd'}:test")) == 2
    with pytest.raises(OxaError, match="has splits test, train"):
        load_benchmark(tmp_path / "dd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OxaError, match=r"empty: not a dataset directory that `datasets` can read"):
        load_benchmark(tmp_path / "empty")


def test_iter_rows_walks_a_large_directory_in_batches(tmp_path, datasets_cache):
    import pyarrow.parquet as pq

    rows = [{"query": f"q{i}", "response": "r" * (i % 7), "n": i} for i in range(2500)]
    repo = _parquet_repo(tmp_path / "pool", {"train": rows})
    got = iter_rows(repo, batch_size=256)
    assert next(got) == rows[0]  # a generator: the first row before the rest are read
    assert [rows[0], *got] == pq.read_table(repo / "data" / "train-00000-of-00001.parquet").to_pylist()
    assert list(iter_rows(repo, limit=3)) == rows[:3]


# --------------------------------------------------------------------------- files, names, registration


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


def test_unknown_names_and_data_dir_errors(tmp_path, monkeypatch):
    with pytest.raises(OxaError, match=r"unknown benchmark 'aime2O' \(no such name, file or directory; hub datasets "
                                       r"are written hf:ORG/NAME\); known names: .*aime24, .*minerva"):
        load_benchmark("aime2O")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(OxaError, match=rf"rl/deepscaler-10k.parquet not found \({tmp_path}/rl/deepscaler-10k.parquet\)"):
        load_benchmark("deepscaler")
    other = tmp_path / "other"
    (other / "rl").mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"problem": "p", "answer": "1"}]), other / "rl" / "deepscaler-10k.parquet")
    assert [r["answer"] for r in load_benchmark("deepscaler", data_dir=other)] == ["1"]  # the argument wins


def test_register_benchmark_by_name(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    seen = []

    def loader(data_dir):
        seen.append(data_dir)
        return [{"id": f"toy-{i}", "query": f"{i}+1?", "answer": str(i + 1)} for i in range(5)]

    register_benchmark("toy", loader)
    assert [r["answer"] for r in load_benchmark("toy", limit=2)] == ["1", "2"] and seen == [None]
    assert benchmark_info("toy") is None and benchmark_key("toy") == "toy"
    register_benchmark("broken", lambda data_dir: [{"id": "x", "query": "q"}])
    with pytest.raises(OxaError, match="benchmark 'broken': record 1 has no answer"):
        load_benchmark("broken")
    assert shipped_rows("aime24")[0] == {"problem": load_benchmark("aime24")[0]["query"], "answer": "204"}
