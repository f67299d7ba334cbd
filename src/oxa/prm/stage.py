"""``oxa steps``: annotate a record file with per-step PRM scores and the first error.

Each output record is its input record plus

* ``step_scores``: P(step right) per step (null where a length cap hid the step);
* ``step_spans``: ``[start, end]`` character offsets of each step in the response (in the steps joined
  by the separator, when the record brings its own ``steps`` list);
* ``first_error_step``: the first step scored below the threshold, -1 if none (ProcessBench's
  convention);
* ``first_error_offset``: where that step begins in the response (cut the prefix there), null if none.

With ``label_field`` (a true first-error index per record, -1 for none, as in ProcessBench's ``label``)
the summary also reports ProcessBench-style accuracies, per ``group_field`` when given.

Records are scored a batch at a time and appended to a progress file; an interrupted run resumes
where it stopped, and under torchrun every rank scores its share and rank 0 merges
(:mod:`oxa.distributed`), as ``oxa score`` does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from oxa.config import cli
from oxa.distributed import all_sum, dist_info, finish_parts, open_part, shard, shutdown
from oxa.errors import OxaError, RecordError
from oxa.io import ReadStats, read_records
from oxa.prm.base import PRM, Judgement, StepInput, judge
from oxa.prm.bench import NO_ERROR, BenchReport, processbench_report
from oxa.prm.load import PRMConfig, load_prm
from oxa.prm.steps import join_steps, split_steps
from oxa.records import Fields, get_field, get_text


class StepsConfig(PRMConfig):
    """Settings of ``oxa steps``."""

    input: Path = Field(description="record file to annotate (JSONL, JSON or Parquet)",
                        json_schema_extra=cli(positional=True))
    output: Path = Field(description="annotated record file (JSONL, or Parquet for .parquet)",
                         json_schema_extra=cli("-o"))
    fields: Fields = Field(default_factory=Fields, description="which fields hold the query and the response")
    steps_field: str | None = Field(None, description="field holding each record's steps as a list (ProcessBench's "
                                    "'steps'); unset: split the response")
    label_field: str | None = Field(None, description="field holding the true first wrong step (-1: none, "
                                    "ProcessBench's 'label'); set: report ProcessBench-style accuracies")
    group_field: str | None = Field(None, description="with label_field: also report the accuracies per value of "
                                    "this field")
    batch_size: PositiveInt = Field(64, description="records scored together (one unit of resumable progress)")
    skip_bad: bool = Field(False, description="skip (and count) malformed lines and records lacking a field")
    progress: bool = Field(True, description="show a progress bar")


@dataclass
class StepsSummary:
    output: Path
    records: int
    scored: int  # by this run (the rest were resumed)
    flagged: int  # records with a first error
    skipped: int
    seconds: float
    bench: BenchReport | None

    def line(self) -> str:
        resumed = self.records - self.scored
        text = (f"annotated {self.records} records ({self.scored} scored in {self.seconds:.1f} s"
                + (f", {resumed} resumed" if resumed else "") + f"); first error flagged in {self.flagged}"
                + (f"; {self.skipped} bad records skipped" if self.skipped else "") + f" -> {self.output}")
        return text + ("\n" + self.bench.line() if self.bench else "")


def annotation(j: Judgement) -> dict[str, Any]:
    """The fields a judgement adds to its record."""
    return {"step_scores": j.scores, "step_spans": [[s.start, s.end] for s in j.steps.steps],
            "first_error_step": NO_ERROR if j.first_error is None else j.first_error,
            "first_error_offset": j.error_offset}


def _item(record: dict, cfg: StepsConfig, prm: PRM, where: str) -> StepInput:
    query = get_text(record, cfg.fields.query, where=where)
    if cfg.steps_field is not None:
        steps = get_field(record, cfg.steps_field, where=where)
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise RecordError(f"{where}: field {cfg.steps_field!r} must be a list of strings")
        return StepInput(query, join_steps(steps, prm.split.separator), record)
    return StepInput(query, split_steps(get_text(record, cfg.fields.response, where=where), prm.split), record)


def _label(record: dict, cfg: StepsConfig, where: str) -> int:
    value = get_field(record, cfg.label_field, where=where)
    if isinstance(value, bool) or not isinstance(value, int) or value < NO_ERROR:
        raise RecordError(f"{where}: field {cfg.label_field!r} must be a step index or -1, got {value!r}")
    return value


def _valid(records: list[dict], cfg: StepsConfig, stats: ReadStats) -> list[int]:
    """Indices of records that have what scoring needs; others raise, or are skipped with skip_bad."""
    needed = [cfg.fields.query, cfg.steps_field or cfg.fields.response]
    valid = []
    for i, r in enumerate(records):
        where = f"{cfg.input}: record {i + 1}"
        try:
            for name in needed:
                get_field(r, name, where=where)
            if cfg.label_field is not None:
                _label(r, cfg, where)
        except RecordError as e:
            if not cfg.skip_bad:
                raise
            stats.skip(str(e))
            continue
        valid.append(i)
    if not valid:
        raise OxaError(f"{cfg.input}: no records to annotate")
    return valid


def _run_identity(cfg: StepsConfig) -> dict:
    st = os.stat(cfg.input)
    return {"stage": "steps", "input": str(Path(cfg.input).resolve()), "input_size": st.st_size,
            "input_mtime_ns": st.st_mtime_ns,
            **cfg.model_dump(mode="json", exclude={"input", "output", "batch_size", "device", "progress",
                                                   "token_budget", "label_field", "group_field"})}


def annotate_steps_file(cfg: StepsConfig, *, prm: PRM | None = None) -> StepsSummary | None:
    """Run ``oxa steps``: annotate ``cfg.input`` into ``cfg.output``, resumably and sharded over ranks.

    ``prm`` overrides the one ``cfg`` describes (a PRM already in memory). Returns the summary on
    rank 0 and None on other ranks.
    """
    start = time.perf_counter()
    rank, world = dist_info()
    stats = ReadStats()
    records = read_records(cfg.input, skip_bad=cfg.skip_bad, stats=stats)
    valid = _valid(records, cfg, stats)
    mine = [valid[k] for k in shard(len(valid), rank, world)]
    writer = open_part(cfg.output, _run_identity(cfg), keep=set(mine).__contains__)
    scored = 0
    try:
        todo = [i for i in mine if i not in writer.done]
        if todo:
            from tqdm.auto import tqdm

            prm = prm or load_prm(cfg)
            with tqdm(total=len(todo), unit="rec", desc="steps", disable=not (cfg.progress and rank == 0),
                      dynamic_ncols=True) as bar:
                for s in range(0, len(todo), cfg.batch_size):
                    batch = todo[s : s + cfg.batch_size]
                    items = [_item(records[i], cfg, prm, f"{cfg.input}: record {i + 1}") for i in batch]
                    judged = judge(prm, items, cfg.threshold)
                    writer.add((i, {**records[i], **annotation(j)}) for i, j in zip(batch, judged))
                    scored += len(batch)
                    bar.update(len(batch))
        scored = all_sum(scored)
        merged = finish_parts(writer, len(valid))
    finally:
        writer.close()
        shutdown()
    if merged is None:
        return None
    bench = None
    if cfg.label_field is not None:
        bench = processbench_report(
            [r["first_error_step"] for r in merged],
            [_label(r, cfg, f"{cfg.output}: record {n + 1}") for n, r in enumerate(merged)],
            [str(r.get(cfg.group_field)) for r in merged] if cfg.group_field else None)
    return StepsSummary(cfg.output, len(merged), scored, sum(r["first_error_step"] != NO_ERROR for r in merged),
                        stats.skipped, time.perf_counter() - start, bench)
