"""`oxa eval`: metrics from graded samples against hand computation, determinism, references, CLI."""

from __future__ import annotations

import json
from fractions import Fraction
from math import comb

import pytest
import torch

from oxa.evaluation import EvalConfig, deepscaler_extract, evaluate, last_boxed, last_number
from oxa.generation.types import Sampled
from oxa.io import read_records, write_records

# problem id -> (gold, how many of its 4 samples answer correctly)
PLAN = {"p0": ("5", 0), "p1": ("12", 1), "p2": ("\\frac{1}{2}", 3), "p3": ("7", 4)}


class Scripted:
    """A backend whose sample s of problem q is right iff s < PLAN[q][1]; every other sample is
    right only for the DeepScaleR rule (answer boxed between two </think>), to create disagreements."""

    name, reports_entropy = "scripted", True

    def __init__(self, problems):
        self.problems = problems

    def run(self, queries, jobs, params, fmt):
        out = []
        for j in jobs:
            pid = self.problems[j.query]["id"]
            gold, right = PLAN[pid]
            s = j.key % 4
            if s < right:
                text = f"<think>easy</think> so \\boxed{{{gold}}}"
            elif s == 3:
                text = f"<think>a</think> \\boxed{{{gold}}} </think> \\boxed{{999}}"
            else:
                text = "<think>no idea</think> \\boxed{-1}"
            out.append((j, Sampled(text=text, token_ids=list(range(10 + s)), finish_reason="stop",
                                   entropy=0.5 + s, sampling_entropy=0.1)))
        yield out


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "mini.jsonl"
    write_records(path, [{"id": pid, "problem": f"Problem {pid}", "answer": gold} for pid, (gold, _) in PLAN.items()])
    return path


def exact(n, c, k):
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))


def test_metrics_match_hand_computation(tmp_path, bench):
    from oxa.data import load_benchmark

    problems = load_benchmark(bench)
    cfg = EvalConfig(model="unused", benchmarks=[str(bench)], output=tmp_path / "out", n=4, second_grader="deepscaler",
                     progress=False, workers=1)
    res = evaluate(cfg, backend=Scripted(problems))
    m = res["benchmarks"]["mini"]
    counts = [c for _, c in PLAN.values()]
    assert m["problems"] == 4 and m["samples_per_problem"] == 4
    assert m["pass@1"] == pytest.approx(sum(counts) / 16)
    for k in (1, 2, 4):
        assert m["pass@k"][str(k)] == pytest.approx(sum(exact(4, c, k) for c in counts) / 4)
    assert {p["id"]: p["correct"] for p in m["per_problem"]} == {pid: c for pid, (_, c) in PLAN.items()}
    # token-weighted entropy: sample s has 10 + s tokens and entropy 0.5 + s
    tokens = [10 + s for pid in PLAN for s in range(4)]
    ent = [0.5 + s for pid in PLAN for s in range(4)]
    assert m["entropy"] == pytest.approx(sum(t * h for t, h in zip(tokens, ent)) / sum(tokens))
    assert m["mean_response_tokens"] == pytest.approx(sum(tokens) / 16)
    # sample 3 is wrong for us (last box after the last </think> is 999) but right for DeepScaleR,
    # except on p3 where it was scripted right (the plan says 4 correct)
    second = m["second_grader"]
    assert second["second_only_correct"] == 3 and second["ours_only_correct"] == 0
    assert second["disagreements"] == 3
    assert res["average"]["pass@1"] == pytest.approx(m["pass@1"])
    samples = read_records(tmp_path / "out" / "samples.jsonl")
    assert len(samples) == 16 and all(s["benchmark"] == "mini" for s in samples)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["mini"]["pass@1"] == m["pass@1"]


def test_no_model_is_loaded_when_every_sample_already_exists(tmp_path, bench, monkeypatch):
    """An eval interrupted after sampling but before the merge left every sample in its part file: the
    re-run merges and grades them without loading the model."""
    import oxa.evaluation.run
    import oxa.generation.stage
    from oxa.data import load_benchmark

    cfg = EvalConfig(model="unused", benchmarks=[str(bench)], output=tmp_path / "out", n=4, progress=False, workers=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(oxa.generation.stage, "finish_parts", interrupted)
        with pytest.raises(KeyboardInterrupt):
            evaluate(cfg, backend=Scripted(load_benchmark(bench)))
    assert not (tmp_path / "out" / "generations" / "mini.jsonl").exists()

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although no sample was missing")

    monkeypatch.setattr(oxa.evaluation.run, "make_backend", no_model)
    assert evaluate(cfg)["benchmarks"]["mini"]["pass@1"] == pytest.approx(sum(c for _, c in PLAN.values()) / 16)


def test_reference_buckets(tmp_path, bench):
    from oxa.data import load_benchmark

    problems = load_benchmark(bench)
    ref = {"benchmarks": {"mini": {"per_problem": [{"id": "p0", "n": 8, "correct": 0}, {"id": "p1", "n": 8, "correct": 0},
                                                   {"id": "p2", "n": 8, "correct": 6}, {"id": "p3", "n": 8, "correct": 8}]}}}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    cfg = EvalConfig(model="unused", benchmarks=[str(bench)], output=tmp_path / "out", n=4, reference=tmp_path / "ref.json",
                     progress=False, workers=1)
    rows = {r["bucket"]: r for r in evaluate(cfg, backend=Scripted(problems))["benchmarks"]["mini"]["difficulty"]}
    assert rows["0"]["problems"] == 2 and rows["0"]["gain"] == pytest.approx((0 + 0.25) / 2)
    assert rows["5-7"]["gain"] == pytest.approx(0.75 - 0.75)
    assert rows["8"]["gain"] == pytest.approx(0.0)


def test_tiny_model_eval_is_deterministic_and_reuses_samples(tmp_path, tiny_model_dir, monkeypatch):
    from typer.testing import CliRunner

    from oxa.cli import app

    monkeypatch.delenv("OXA_DATA_DIR", raising=False)  # gsm8k is shipped: no data directory needed
    args = ["eval", "gsm8k", "--model", str(tiny_model_dir), "--n", "3", "--max-new-tokens", "10", "--limit", "3",
            "--temperature", "1.0", "--seed", "4"]
    runner = CliRunner()
    for out, global_seed in (("a", 1), ("b", 2)):
        torch.manual_seed(global_seed)  # each sample has its own seeded stream: the global one must not matter
        result = runner.invoke(app, args + ["-o", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["benchmarks"] == b["benchmarks"]
    assert read_records(tmp_path / "a" / "samples.jsonl") == read_records(tmp_path / "b" / "samples.jsonl")
    assert a["benchmarks"]["gsm8k"]["pass@k"].keys() == {"1", "2", "3"}
    # a re-run finds the generations and only regrades
    gen = tmp_path / "a" / "generations" / "gsm8k.jsonl"
    before = gen.stat().st_mtime_ns
    assert runner.invoke(app, args + ["-o", str(tmp_path / "a")]).exit_code == 0
    assert gen.stat().st_mtime_ns == before
    # other settings into the same directory are refused, not mixed with the old samples
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "a"), "--top-p", "0.5"])
    assert result.exit_code != 0 and "other settings" in str(result.exception)


def test_extractors():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{open") is None
    assert deepscaler_extract("<think>x</think> \\boxed{3} </think> \\boxed{4}") == "3"
    assert deepscaler_extract("\\boxed{3}") is None  # DeepScaleR needs the think delimiters
    assert last_number("16 - 3 - 4 = 9 eggs, 9 * $2 = $18.") == "18"
    assert last_number("It costs $1,200.50 in all") == "1200.50" and last_number("a loss of -7") == "-7"
    assert last_number("no digits") is None
