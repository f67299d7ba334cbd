"""`oxa eval`: sample n answers per benchmark problem, grade them, and compute the paper's metrics.

Layout of OUT_DIR:

* ``generations/<benchmark>.jsonl`` - raw samples per benchmark, written resumably (an interrupted
  eval re-run draws only the missing samples; a finished benchmark is not sampled again, and
  ``<benchmark>.settings.json`` beside it makes a re-run with other settings an error, not a mix);
* ``samples.jsonl`` - every sample of every benchmark with ``benchmark``, ``correct``, ``pred``,
  ``status`` (and ``correct_second`` / ``pred_second`` with a second grader);
* ``results.json`` - settings, and per benchmark: Pass@1, Pass@k for k = 1, 2, 4, ..., n, mean
  response length, policy entropy, finish reasons, grader disagreements, per-problem pass counts and
  (with a reference) gains by difficulty bucket; plus the paper's "Avg." over benchmarks.

Policy entropy is the token mean, over every sampled response token of the benchmark, of the entropy
of the raw policy's next-token distribution (temperature 1, no top-p), recorded during sampling
from the same logits that were sampled from (no second pass). This is verl's ``actor/entropy``
(token-mean aggregation). The entropy of the temperature/top-p distribution actually sampled from is
reported beside it as ``sampling_entropy``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch.distributed as dist
from pydantic import Field

from oxa.config import cli
from oxa.data import benchmark_key, load_benchmark
from oxa.distributed import dist_info, shutdown
from oxa.errors import OxaError
from oxa.evaluation.difficulty import bucket_gains
from oxa.evaluation.graders import SECOND_GRADERS
from oxa.evaluation.passk import k_values, mean_pass_at_k
from oxa.generation import SamplingConfig, make_backend
from oxa.generation.stage import sample_to_file
from oxa.io import read_records, write_json, write_records
from oxa.records import Fields

PAPER_N = {"minerva": 64}  # samples per problem in the paper; 128 for every other benchmark
PAPER_N_DEFAULT = 128
FIELDS = Fields()  # benchmark loaders normalise every benchmark to id / query / answer


class EvalConfig(SamplingConfig):
    model: str = Field(description="model directory, hub id, .gguf file or alias",
                       json_schema_extra=cli("-m", section="Options"))
    benchmarks: list[str] = Field(min_length=1, description=(
        "benchmark names (python -m oxa.data lists them), record files, dataset directories (DIR[:SPLIT]) "
        "or hub datasets (hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION])"), json_schema_extra=cli(positional=True))
    output: Path = Field(description="output directory", json_schema_extra=cli("-o"))
    n: int | None = Field(None, ge=1, description="samples per problem; default the paper's (128, Minerva 64)",
                          json_schema_extra=cli(section="Sampling"))
    limit: int | None = Field(None, ge=1, description="only the first LIMIT problems of each benchmark")
    data_dir: Path | None = Field(None, description="directory holding the unshipped files of named sets "
                                  "(rl/deepscaler-10k.parquet, gsm8k/train.jsonl); default $OXA_DATA_DIR")
    reference: Path | None = Field(None, description="a reference model's results.json, for gains by difficulty")
    second_grader: str | None = Field(None, description="also grade with this extractor (deepscaler, "
                                                        "last-number) and count disagreements")
    workers: int = Field(2, ge=1, description="grading processes")
    grade_timeout: float = Field(5.0, gt=0, description="seconds one answer may take to grade")
    progress: bool = Field(True, description="show progress bars")


def samples_per_problem(cfg: EvalConfig, benchmark: str) -> int:
    return cfg.n if cfg.n is not None else PAPER_N.get(benchmark, PAPER_N_DEFAULT)


def evaluate(cfg: EvalConfig, *, backend=None) -> dict:
    """Run the whole evaluation (see the module docstring); returns what is written to results.json
    (an empty dict on ranks other than 0 under torchrun, which only help with the sampling)."""

    if cfg.second_grader is not None and cfg.second_grader not in SECOND_GRADERS:
        raise OxaError(f"unknown second grader {cfg.second_grader!r}; choose one of {sorted(SECOND_GRADERS)}")
    reference = _load_reference(cfg.reference) if cfg.reference else None
    rank, _ = dist_info()
    caller_group = dist.is_available() and dist.is_initialized()  # e.g. a training run's: left running
    out = Path(cfg.output)
    results: dict = {"model": cfg.model, "settings": _settings(cfg), "benchmarks": {}}
    all_samples: list[dict] = []

    def get_backend():  # the model is loaded only when a sample is missing
        nonlocal backend
        backend = backend or make_backend(cfg.model, cfg)
        return backend

    for spec in cfg.benchmarks:
        key = benchmark_key(spec)
        problems = load_benchmark(spec, data_dir=cfg.data_dir, limit=cfg.limit)
        if not problems:
            raise OxaError(f"benchmark {spec!r} has no problems")
        n = samples_per_problem(cfg, key)
        path = out / "generations" / f"{key}.jsonl"
        stamp = path.with_suffix(".settings.json")  # what the finished samples were drawn with
        identity = _run_identity(problems, n, cfg)
        if not path.exists():
            sample_to_file(problems, path, identity, cfg, get_backend, n=n, fields=FIELDS, where=str(path),
                           progress=cfg.progress)
            if rank == 0:
                write_json(stamp, identity)
        elif not stamp.exists() or json.loads(stamp.read_text(encoding="utf-8")) != identity:
            raise OxaError(f"{path}: samples drawn with other settings (see {stamp.name}); use another output "
                           "directory, or delete the file to sample again")
        if rank != 0:
            continue  # under torchrun the ranks share the sampling; rank 0 grades and writes the results
        samples = read_records(path)
        graded = _grade(samples, cfg)
        for s in graded:
            s["benchmark"] = key
        all_samples += graded
        results["benchmarks"][key] = benchmark_metrics(graded, n, reference=(reference or {}).get(key))
    if not caller_group:
        shutdown()
    if rank != 0:
        return {}
    results["average"] = average(results["benchmarks"])
    write_records(out / "samples.jsonl", all_samples)
    write_json(out / "results.json", results)
    return results


def _run_identity(problems: list[dict], n: int, cfg: EvalConfig) -> dict:
    """Everything that determines a benchmark's samples (not batch size or device)."""
    sampling = SamplingConfig.model_validate({**cfg.model_dump(include=set(SamplingConfig.model_fields)), "n": n})
    return {"stage": "eval", "model": cfg.model, "problems": [str(p["id"]) for p in problems],
            **json.loads(sampling.model_dump_json(exclude={"batch_size", "device"}))}


def _grade(samples: list[dict], cfg: EvalConfig) -> list[dict]:
    from oxa.verify import grade_many

    golds = [s[FIELDS.answer] for s in samples]
    verdicts = grade_many([s[FIELDS.response] for s in samples], golds, workers=cfg.workers,
                          timeout=cfg.grade_timeout, progress=cfg.progress)
    graded = [{**s, "correct": v.correct, "pred": v.pred, "status": v.status} for s, v in zip(samples, verdicts)]
    if cfg.second_grader is not None:
        extract = SECOND_GRADERS[cfg.second_grader]
        preds = [extract(s[FIELDS.response]) for s in samples]
        # the same math-verify judgement, fed the other rule's extraction as the only \boxed answer
        second = grade_many(["" if p is None else f"\\boxed{{{p}}}" for p in preds], golds, workers=cfg.workers,
                            timeout=cfg.grade_timeout, progress=cfg.progress)
        for g, p, v in zip(graded, preds, second):
            g["correct_second"] = v.correct if p is not None else False
            g["pred_second"] = p
    return graded


def benchmark_metrics(samples: list[dict], n: int, *, reference: list[dict] | None = None) -> dict:
    """Metrics of one benchmark's graded samples (``n`` per problem, query-major order)."""
    problems: dict[str, dict] = {}
    for s in samples:
        p = problems.setdefault(str(s["query_id"]), {"id": str(s["query_id"]), "n": 0, "correct": 0})
        p["n"] += 1
        p["correct"] += bool(s["correct"])
    counts = [(p["n"], p["correct"]) for p in problems.values()]
    if any(m != n for m, _ in counts):
        raise OxaError(f"expected {n} samples for every problem, found {sorted({m for m, _ in counts})}")
    tokens = sum(s["n_tokens"] for s in samples)
    metrics = {
        "problems": len(problems),
        "samples_per_problem": n,
        "pass@1": sum(bool(s["correct"]) for s in samples) / len(samples),
        "pass@k": {str(k): mean_pass_at_k(counts, k) for k in k_values(n)},
        "mean_response_tokens": tokens / len(samples),
        "entropy": _token_mean(samples, "entropy"),
        "sampling_entropy": _token_mean(samples, "sampling_entropy"),
        "finish_reasons": dict(sorted(Counter(s["finish_reason"] for s in samples).items())),
        "grade_status": dict(sorted(Counter(s.get("status", "?") for s in samples).items())),
    }
    if any("correct_second" in s for s in samples):
        disagree = [s for s in samples if bool(s["correct"]) != bool(s["correct_second"])]
        metrics["second_grader"] = {
            "pass@1": sum(bool(s["correct_second"]) for s in samples) / len(samples),
            "disagreements": len(disagree),
            "ours_only_correct": sum(bool(s["correct"]) for s in disagree),
            "second_only_correct": sum(bool(s["correct_second"]) for s in disagree),
        }
    if reference is not None:
        metrics["difficulty"] = bucket_gains(list(problems.values()), reference)
    metrics["per_problem"] = list(problems.values())
    return metrics


def _token_mean(samples: list[dict], field: str) -> float | None:
    """Sum over samples of (per-sample token mean x tokens) / all tokens: the mean over every token."""
    rows = [(s[field], s["n_tokens"]) for s in samples if s.get(field) is not None]
    total = sum(t for _, t in rows)
    return sum(h * t for h, t in rows) / total if total else None


def average(benchmarks: dict[str, dict]) -> dict:
    """The paper's "Avg." column: the unweighted mean over benchmarks of Pass@1 and of Pass@k at k = n,
    plus the mean at every k all benchmarks share."""
    rows = list(benchmarks.values())
    shared = set.intersection(*(set(r["pass@k"]) for r in rows))
    return {
        "benchmarks": len(rows),
        "pass@1": sum(r["pass@1"] for r in rows) / len(rows),
        "pass@n": sum(r["pass@k"][str(r["samples_per_problem"])] for r in rows) / len(rows),
        "pass@k": {k: sum(r["pass@k"][k] for r in rows) / len(rows) for k in sorted(shared, key=int)},
    }


def _settings(cfg: EvalConfig) -> dict:
    return json.loads(cfg.model_dump_json(exclude={"progress", "batch_size", "device", "workers"}))


def _load_reference(path: Path) -> dict[str, list[dict]]:
    """Per-problem pass counts of a reference model, by benchmark, from its results.json."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {name: b["per_problem"] for name, b in data["benchmarks"].items()}
    except FileNotFoundError:
        raise OxaError(f"{path}: reference results not found") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise OxaError(f"{path}: not an `oxa eval` results.json ({type(e).__name__}: {e})") from None
