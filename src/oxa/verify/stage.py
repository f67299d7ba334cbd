"""Grading record files: ``verify_records`` on records in memory and ``verify_file``, the resumable
``oxa verify`` stage, with errors that name the file, line and field of a bad record."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from oxa.config import StageConfig
from oxa.errors import RecordError
from oxa.io import ReadStats, ResumableWriter, read_records, write_json
from oxa.records import Fields, get_field
from oxa.verify.batch import grade_distinct, grade_tasks, progress_bar
from oxa.verify.extract import extract_answer, gold_answers
from oxa.verify.grade import Task, Verdict, summarize
from oxa.verify.pool import GradingPool


def _task_of(record: dict, fields: Fields, locate: Callable[[int], str], i: int, require_think: bool) -> Task:
    """(extracted answer, normalised golds) of record ``i``, or RecordError naming its place and the field."""
    response, gold = record.get(fields.response), record.get(fields.answer)
    if response is None or gold is None:
        for name in (fields.response, fields.answer):
            get_field(record, name, where=locate(i))  # raises, naming the field and the fields present
    if not isinstance(response, str):
        raise RecordError(f"{locate(i)}: field {fields.response!r} must be text, got {type(response).__name__}")
    try:
        golds = gold_answers(gold)
    except ValueError as e:
        raise RecordError(f"{locate(i)}: field {fields.answer!r}: {e}") from None
    return extract_answer(response, require_think=require_think), golds


def _jsonl_lines(path: Path) -> list[int]:
    """1-based line number of each record :func:`oxa.io.read_records` yields from a JSONL file."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            with contextlib.suppress(ValueError):
                if line.strip() and isinstance(json.loads(line), dict):
                    lines.append(lineno)
    return lines


def _locator(source: str | Path) -> Callable[[int], str]:
    """``where(i)`` for record ``i`` of ``source``: ``file:line`` for a JSONL file, else ``source: record N``."""
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".ndjson") and path.is_file():
        lines: list[int] = []
        def where(i: int) -> str:
            if not lines:  # found only when a record is bad, which is rare: no cost on the good path
                lines.extend(_jsonl_lines(path))
            return f"{path}:{lines[i]}" if i < len(lines) else f"{path}: record {i + 1}"
        return where
    return lambda i: f"{source}: record {i + 1}"


def _tasks(records: Sequence[dict], fields: Fields, source: str | Path, require_think: bool, skip_bad: bool,
           stats: ReadStats) -> tuple[list[int], list[Task]]:
    """Positions of the gradeable records and their tasks; bad ones raise, or are skipped and counted."""
    kept, tasks = [], []
    where = _locator(source)
    for i, record in enumerate(records):
        try:
            tasks.append(_task_of(record, fields, where, i, require_think))
        except RecordError as e:
            if not skip_bad:
                raise
            stats.skip(str(e))
            continue
        kept.append(i)
    return kept, tasks


def _graded(record: dict, verdict: Verdict) -> dict:
    return {**record, "correct": verdict.correct, "pred": verdict.pred, "verdict": verdict.status}


def verify_records(records: Sequence[dict], fields: Fields = Fields(), *, workers: int = 2, timeout: float = 5.0,
                   progress: bool = True, require_think: bool = False, skip_bad: bool = False,
                   source: str = "records") -> tuple[list[dict], dict[str, Any]]:
    """Grade each record's response against its gold answer.

    Returns the records (all input fields kept) with ``correct`` (bool), ``pred`` (the extracted answer
    or None) and ``verdict`` (the status) added, and a summary of counts. A record lacking the response
    or answer field raises :class:`RecordError` naming ``source``, the record number and the field; with
    ``skip_bad`` it is left out and counted in ``summary["skipped"]``. An empty response is ``unparsable``.
    """
    stats = ReadStats()
    kept, tasks = _tasks(records, fields, source, require_think, skip_bad, stats)
    verdicts, n_distinct, killed = grade_tasks(tasks, workers, timeout, progress)
    out = [_graded(records[i], v) for i, v in zip(kept, verdicts)]
    summary = {**summarize([v.status for v in verdicts]), "skipped": stats.skipped, "skip_reasons": stats.reasons,
               "distinct_graded": n_distinct, "workers_killed": killed}
    return out, summary


class VerifyConfig(StageConfig):
    """Settings of ``oxa verify`` (every field is also a command-line flag)."""

    input: Path
    output: Path
    fields: Fields = Fields()
    workers: int = Field(2, ge=1)
    timeout: float = Field(5.0, gt=0)
    require_think: bool = False
    skip_bad: bool = False
    block_size: int = Field(4096, ge=1)
    progress: bool = True


def summary_path(output: Path) -> Path:
    """Where ``oxa verify`` writes its summary: beside the output, ``<output>.summary.json``."""
    return output.with_name(output.name + ".summary.json")


def verify_file(config: VerifyConfig) -> dict[str, Any]:
    """What ``oxa verify`` runs: grade a record file, resumably, and write the output and its summary.

    Records are graded in blocks of ``block_size``; each finished block is appended to
    ``<output>.partial``, so an interrupted run re-run with the same output continues where it stopped.
    The summary (counts, accuracy, skipped records, settings, time) goes to :func:`summary_path`.
    """
    t0 = time.time()
    read = ReadStats()
    records = read_records(config.input, skip_bad=config.skip_bad, stats=read)
    bad = ReadStats()
    kept, tasks = _tasks(records, config.fields, str(config.input), config.require_think, config.skip_bad, bad)
    with ResumableWriter(config.output) as writer:
        todo = [j for j in range(len(kept)) if j not in writer.done]
        with GradingPool(config.workers, config.timeout) as pool, \
                progress_bar(len(kept), "verify", config.progress) as advance:
            advance(len(kept) - len(todo))
            for b in range(0, len(todo), config.block_size):
                block = todo[b:b + config.block_size]
                verdicts = grade_distinct(pool, [tasks[j] for j in block])
                writer.add((j, _graded(records[kept[j]], v)) for j, v in zip(block, verdicts))
                advance(len(block))
        out = writer.finish(len(kept))
    summary = {
        **summarize([r["verdict"] for r in out]),
        "skipped": read.skipped + bad.skipped,
        "skip_reasons": (read.reasons + bad.reasons)[:5],
        "workers_killed": pool.killed,
        "input": str(config.input),
        "output": str(config.output),
        "seconds": round(time.time() - t0, 3),
        "config": config.model_dump(mode="json"),
    }
    write_json(summary_path(config.output), summary)
    return summary
