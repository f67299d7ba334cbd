"""`oxa distill` end to end on a tiny model: every step's artefact, the UL set's rules, skipping on re-run."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from oxa.io import read_records, write_records


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    rows = []
    for i in range(12):
        a, b = i + 3, 2 * i + 1
        rows.append({"id": f"t{i}", "query": f"What is {a} + {b}?", "answer": str(a + b),
                     "response": f"<think>\n{a} + {b} = {a + b}\n</think>\n\\boxed{{{a + b}}}", "correct": i != 5})
    for i in (0, 3, 7):  # a query with several teacher responses, as in a teacher pool of k per query
        rows.append({**rows[i], "id": f"t{i}b", "response": f"<think>\nadd\n</think>\n\\boxed{{{rows[i]['answer']}}}",
                     "verdict": "correct"})
    path = tmp_path_factory.mktemp("distill") / "teacher.jsonl"
    write_records(path, rows)
    return path


def test_distill_pipeline_writes_every_step_and_skips_them_on_rerun(tmp_path, teacher, tiny_model_dir):
    from oxa.distill import DistillConfig, distill

    cfg = DistillConfig(
        base_model=str(tiny_model_dir), teacher=teacher, output=tmp_path / "run", teacher_n=6, n_errors=5,
        sampling={"n": 3, "max_new_tokens": 12, "temperature": 1.0, "batch_size": 16},
        train={"max_steps": 2, "ce_per_step": 3, "learning_rate": 1e-3, "cutoff_len": 256},
        progress=False,
    )
    logs: list[str] = []
    ul = distill(cfg, log=logs.append)
    run = tmp_path / "run"
    subset = read_records(run / "teacher_subset.jsonl")
    assert len(subset) == 6 and all(r["correct"] for r in subset)  # only verified teacher records
    # the instruct model was fine-tuned from the base: same tensors, other values
    from safetensors.torch import load_file

    base, instruct = load_file(tiny_model_dir / "model.safetensors"), load_file(run / "instruct" / "model.safetensors")
    assert instruct.keys() == base.keys() and any(not (instruct[k] == base[k]).all() for k in base)
    samples = read_records(run / "samples.jsonl")
    assert len(samples) == 12 * 3  # n samples per distinct query, not per teacher record (15)
    assert set(Counter(r["query"] for r in samples).values()) == {3}
    assert not any("verdict" in r for r in samples)  # nothing of the teacher's responses is carried over
    verified = read_records(run / "verified.jsonl")
    assert [r["response"] for r in verified] == [r["response"] for r in samples]
    scored = read_records(run / "errors_scored.jsonl")
    assert len(scored) == sum(r["correct"] is False for r in verified)
    selected = read_records(ul)
    # the UL set: incorrect, PPL >= 1.2, one per query, the globally lowest PPLs
    assert 0 < len(selected) <= 5
    assert all(r["correct"] is False and r["ppl"] >= 1.2 for r in selected)
    assert len({r["query"] for r in selected}) == len(selected)
    best = {}
    for r in scored:
        if r["ppl"] is not None and r["ppl"] >= 1.2:
            best[r["query"]] = min(best.get(r["query"], float("inf")), r["ppl"])
    assert sorted(r["ppl"] for r in selected) == pytest.approx(sorted(best.values())[: len(selected)])
    manifest = json.loads((run / "manifest.json").read_text())  # the pipeline engine's
    assert list(manifest["stages"]) == ["teacher_subset", "train", "queries", "generate", "verify", "score",
                                        "select"]
    assert manifest["stages"]["select"]["counts"]["selected"] == len(selected)

    mtimes = {p.name: p.stat().st_mtime_ns for p in run.glob("*.jsonl")}
    logs.clear()
    distill(cfg, log=logs.append)
    assert sum("up to date, reused" in line for line in logs) == 7
    assert {p.name: p.stat().st_mtime_ns for p in run.glob("*.jsonl")} == mtimes

    # another UL-set size redoes only the selection, from the same scored errors
    logs.clear()
    smaller = read_records(distill(cfg.model_copy(update={"n_errors": 1}), log=logs.append))
    assert sum("up to date, reused" in line for line in logs) == 6
    assert [r["ppl"] for r in smaller] == pytest.approx(sorted(best.values())[:1])
    assert {p.name: p.stat().st_mtime_ns for p in run.glob("*.jsonl") if p.name != "ul_set.jsonl"} == \
        {k: v for k, v in mtimes.items() if k != "ul_set.jsonl"}


def test_queries_are_distinct_limited_and_carry_no_response(tmp_path):
    from oxa.distill import DistillConfig, _queries

    rows = [{"id": 1, "q": "a?", "answer": "1", "response": "r1", "correct": True, "ppl": 1.1, "topic": "x"},
            {"id": 2, "q": "b?", "answer": "2", "response": "r2", "correct": False},
            {"id": 3, "q": "a?", "answer": "1", "response": "r3", "correct": False},
            {"id": 4, "answer": "4", "response": "r4"},  # no query
            {"id": 5, "q": "c?", "answer": "3", "response": "r5"}]
    write_records(tmp_path / "t.jsonl", rows)
    cfg = DistillConfig(base_model="m", teacher=tmp_path / "t.jsonl", output=tmp_path, fields={"query": "q"},
                        skip_bad=True, query_limit=2)
    counts = _queries(cfg, tmp_path / "queries.jsonl")
    assert read_records(tmp_path / "queries.jsonl") == [{"id": 1, "q": "a?", "answer": "1", "topic": "x"},
                                                        {"id": 2, "q": "b?", "answer": "2"}]
    assert counts == {"records": 5, "skipped": 1, "distinct_queries": 3, "queries": 2}
    from oxa.errors import RecordError

    with pytest.raises(RecordError, match="record 4: field 'q' is missing"):
        _queries(cfg.model_copy(update={"skip_bad": False}), tmp_path / "q2.jsonl")


def test_cli_settings_come_from_config_and_flags(tmp_path, teacher, monkeypatch):
    from typer.testing import CliRunner

    import oxa.distill
    from oxa.cli import app

    seen = []
    monkeypatch.setattr(oxa.distill, "distill", lambda cfg, log: seen.append(cfg) or cfg.output / "ul_set.jsonl")
    cfg = tmp_path / "d.yaml"
    cfg.write_text("base_model: m\nn_errors: 7\nsampling:\n  n: 8\n  top_p: 0.9\ntrain:\n  learning_rate: 0.001\n"
                   "fields:\n  query: problem\n")
    result = CliRunner().invoke(app, ["distill", str(teacher), "-o", str(tmp_path / "run"), "--config", str(cfg),
                                      "--sampling.n", "2", "--query-field", "question"])
    assert result.exit_code == 0, result.output
    (c,) = seen
    assert (c.n_errors, c.sampling.n, c.sampling.top_p, c.train, c.fields.query) == (7, 2, 0.9, {"learning_rate": 0.001}, "question")
    assert c.sampling.max_new_tokens == 4096 and c.teacher == teacher
