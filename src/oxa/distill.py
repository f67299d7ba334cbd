"""`oxa distill`: self-distillation and error mining, the data behind OXA_Full's unlikelihood term.

The paper (section 3.2, reference.md section 2): train an instruction model on a small teacher set,
let it answer the training queries itself, verify the answers, score the *incorrect* ones with the
*pre-trained* model, and keep the lowest-PPL errors (PPL >= 1.2 to drop degenerate repetition, one per
query, the global lowest N): confident mistakes the base model would make, to be suppressed.

Every step writes one artefact in the run directory, atomically; the steps are run by the pipeline
engine, so a re-run reuses every step whose settings and inputs are unchanged and whose artefact exists
(generation and scoring also resume inside the step), and a settings change redoes only the steps it
touches:

    teacher_subset.jsonl  the small teacher set (verified records when the data has ``correct``)
    instruct/             the instruction model trained on it (oxa.training, method sft)
    queries.jsonl         the training queries, each once (a teacher pool may hold k responses per query),
                          without the teacher's response or anything describing it (RESPONSE_FIELDS)
    samples.jsonl         its own samples, ``sampling.n`` per query (oxa.generation)
    verified.jsonl        the samples with correct / pred (oxa.verify)
    errors_scored.jsonl   the incorrect samples with the base model's ppl (oxa.scoring)
    ul_set.jsonl          the selected errors (oxa.selection.select_errors), + ul_set.hist.json
    manifest.json         settings and per-step keys, counts and seconds (the engine's)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.errors import OxaError, RecordError
from oxa.generation import SamplingConfig
from oxa.io import ReadStats, read_records, write_json, write_records
from oxa.prompting import PromptFormat
from oxa.records import RESPONSE_FIELDS, Fields, get_text


class DistillSampling(SamplingConfig):
    """Sampling of the instruct model's own answers: a few per query, responses up to 4,096 tokens."""

    n: int = Field(4, ge=1, description="samples per query")
    max_new_tokens: int = Field(4096, ge=1, description="longest sample, in tokens")


class DistillConfig(StageConfig):
    base_model: str = Field(description="the pre-trained model: initialises the instruct model and scores errors",
                            json_schema_extra=cli("-m"))
    teacher: Path = Field(description="teacher records (query, response, answer; `correct` if verified)",
                          json_schema_extra=cli(positional=True))
    output: Path = Field(description="run directory", json_schema_extra=cli("-o"))
    teacher_n: int = Field(1000, ge=1, description="size of the small teacher set")
    queries: Path | None = Field(None, description="queries to self-distil on; default the teacher file's")
    query_limit: int | None = Field(None, ge=1, description="only the first N distinct queries")
    n_errors: int = Field(50_000, ge=1, description="size of the UL set (global N)")
    min_ppl: float = Field(1.2, description="drop errors below this PPL (degenerate repetition)")
    max_per_query: int = Field(1, ge=1, description="at most this many errors per query")
    seed: int = Field(0, description="seed of the subset, training, sampling and tie-breaks")
    train: dict[str, Any] = Field(default_factory=dict, description="further TrainConfig settings for the instruct "
                                                                    "model (oxa train's keys)")
    sampling: DistillSampling = Field(default_factory=DistillSampling)
    fields: Fields = Field(default_factory=Fields)
    prompt: PromptFormat = Field(default_factory=PromptFormat)
    token_budget: int = Field(16384, ge=1, description="padded tokens per scoring batch")
    workers: int = Field(2, ge=1, description="grading processes")
    grade_timeout: float = Field(5.0, gt=0, description="seconds one answer may take to grade")
    skip_bad: bool = Field(False, description="skip malformed lines and records lacking fields, and count them")
    progress: bool = Field(True, description="show progress bars")


def distill(cfg: DistillConfig, *, log: Callable[[str], None] = print) -> Path:
    """Run the steps not done yet (the engine's reuse: :mod:`oxa.pipeline.engine`); returns the UL set's path."""
    from oxa.pipeline.engine import Step, run_steps

    run = Path(cfg.output)
    s = json.loads(cfg.model_dump_json(exclude={"progress", "workers", "output"}))

    def of(*names: str) -> dict:  # what a step's result depends on, besides the steps before it
        return {k: s[k] for k in names}

    subset, model_dir, queries = run / "teacher_subset.jsonl", run / "instruct", run / "queries.jsonl"
    samples, verified = run / "samples.jsonl", run / "verified.jsonl"
    scored, ul_set = run / "errors_scored.jsonl", run / "ul_set.jsonl"
    steps = [
        Step("teacher_subset", lambda: {"counts": _teacher_subset(cfg, subset)},
             of("teacher", "teacher_n", "seed", "skip_bad"), outputs=(str(subset),)),
        Step("train", lambda: {"counts": _train(cfg, subset, model_dir)},
             of("base_model", "train", "fields", "prompt", "seed"), after=("teacher_subset",),
             outputs=(str(model_dir / "oxa_train.json"),)),
        Step("queries", lambda: {"counts": _queries(cfg, queries)},
             of("teacher", "queries", "query_limit", "fields", "skip_bad"), outputs=(str(queries),)),
        Step("generate", lambda: {"counts": _generate(cfg, model_dir, queries, samples)},
             of("sampling", "prompt", "fields", "skip_bad"), after=("train", "queries"), outputs=(str(samples),)),
        Step("verify", lambda: {"counts": _verify(cfg, samples, verified)}, of("fields", "grade_timeout"),
             after=("generate",), outputs=(str(verified),)),
        Step("score", lambda: {"counts": _score(cfg, verified, scored)},
             of("base_model", "fields", "prompt", "token_budget"), after=("verify",), outputs=(str(scored),)),
        Step("select", lambda: {"counts": _select(cfg, scored, ul_set)},
             of("n_errors", "min_ppl", "max_per_query", "seed", "fields"), after=("score",), outputs=(str(ul_set),)),
    ]
    run_steps(steps, run, header={"distill": s}, log=log)
    return ul_set


def _teacher_subset(cfg: DistillConfig, out: Path) -> dict:
    """``teacher_n`` records drawn with ``seed``; only verified-correct ones if the data says so."""
    records = read_records(cfg.teacher, skip_bad=cfg.skip_bad)
    verified = [r for r in records if r.get("correct") is True]
    pool = verified if any("correct" in r for r in records) else records
    if not pool:
        raise OxaError(f"{cfg.teacher}: no verified-correct teacher records to train on")
    chosen = random.Random(cfg.seed).sample(range(len(pool)), min(cfg.teacher_n, len(pool)))
    write_records(out, [pool[i] for i in sorted(chosen)])
    return {"teacher_records": len(records), "eligible": len(pool), "chosen": len(chosen)}


def _train(cfg: DistillConfig, subset: Path, model_dir: Path) -> dict:
    from oxa.training import TrainConfig, train

    settings = {"model": cfg.base_model, "output_dir": model_dir, "method": "sft", "ce_data": subset,
                "fields": cfg.fields, "prompt": cfg.prompt, "seed": cfg.seed, **cfg.train}
    saved = Path(train(TrainConfig.model_validate(settings)))
    if saved.resolve() != model_dir.resolve():
        raise OxaError(f"training saved the model in {saved}, expected {model_dir}; do not set output_dir in `train`")
    return {"model": str(saved)}


def _queries(cfg: DistillConfig, out: Path) -> dict:
    """Each distinct query of ``queries`` (default the teacher file) once, as its first record has it,
    less the response and :data:`RESPONSE_FIELDS`: the instruct model then answers every query
    ``sampling.n`` times, however many teacher responses it has. ``query_limit`` keeps the first N."""
    source = cfg.queries or cfg.teacher
    stats = ReadStats()
    records = read_records(source, skip_bad=cfg.skip_bad, stats=stats)
    first: dict[str, dict] = {}
    for i, record in enumerate(records):
        try:
            query = get_text(record, cfg.fields.query, where=f"{source}: record {i + 1}")
        except RecordError as e:
            if not cfg.skip_bad:
                raise
            stats.skip(str(e))
            continue
        first.setdefault(query, record)
    drop = {cfg.fields.response, *RESPONSE_FIELDS}
    queries = [{k: v for k, v in r.items() if k not in drop} for r in first.values()][: cfg.query_limit]
    if not queries:
        raise OxaError(f"{source}: no queries to sample")
    write_records(out, queries)
    return {"records": len(records), "skipped": stats.skipped, "distinct_queries": len(first), "queries": len(queries)}


def _generate(cfg: DistillConfig, model_dir: Path, queries: Path, out: Path) -> dict:
    from oxa.generation import GenerateConfig, generate_file

    gen = GenerateConfig(**cfg.sampling.model_dump(exclude={"prompt"}), prompt=cfg.prompt, model=str(model_dir),
                         input=queries, output=out, fields=cfg.fields, skip_bad=cfg.skip_bad, progress=cfg.progress)
    generate_file(gen)
    with open(out, encoding="utf-8") as f:
        return {"samples": sum(1 for _ in f)}


def _verify(cfg: DistillConfig, samples: Path, out: Path) -> dict:
    from oxa.verify import verify_records

    records, summary = verify_records(read_records(samples), cfg.fields, workers=cfg.workers,
                                      timeout=cfg.grade_timeout, progress=cfg.progress, source=str(samples))
    write_records(out, records)
    return {"verified": len(records), "correct": summary["correct"]}


def _score(cfg: DistillConfig, verified: Path, out: Path) -> dict:
    """The incorrect samples' PPL under the *pre-trained* model (resumable through ``oxa.scoring``)."""
    from oxa.scoring import ScoreConfig, score_file

    incorrect = out.with_name("errors.jsonl")
    errors = [r for r in read_records(verified) if r.get("correct") is False]
    if not errors:
        raise OxaError(f"{verified}: the instruct model made no errors to mine; sample more (sampling.n) or more queries")
    if not incorrect.exists():
        write_records(incorrect, errors)
    summary = score_file(ScoreConfig(input=incorrect, output=out, model=cfg.base_model, fields=cfg.fields,
                                     prompt=cfg.prompt, token_budget=cfg.token_budget, progress=cfg.progress))
    incorrect.unlink()
    return {"incorrect": len(errors), "without_ppl": summary.nan if summary else None}


def _select(cfg: DistillConfig, scored: Path, out: Path) -> dict:
    from oxa.selection import select_errors, side_paths

    selection = select_errors(read_records(scored), cfg.n_errors, min_ppl=cfg.min_ppl,
                              max_per_query=cfg.max_per_query, seed=cfg.seed, group_field=cfg.fields.query,
                              source=str(scored))
    write_json(side_paths(out)[0], selection.histogram())
    write_records(out, selection.records)
    return {"selected": len(selection.records), **{f"pool_{k}": v for k, v in selection.stats.items()}}
