"""Trivial stage kinds for the engine's tests (a recipe names them as pipeline_kinds:count, ...)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import Field

from oxa.config import StageConfig
from oxa.io import read_records, write_json, write_records
from oxa.pipeline import StageContext, stage_kind


class CountConfig(StageConfig):
    n: int = Field(3, description="records")
    scale: int = Field(1, description="value of record i: scale * i * i")
    delay: float = Field(0.0, description="seconds per record")
    fail_at: int | None = Field(None, description="raise at this record")
    output: Path = Field(description="the records")


@stage_kind("test-count", CountConfig)
def count(cfg: CountConfig, ctx: StageContext) -> dict:
    """One part file per record under <dir>/parts (the stage's own partial results: a re-run keeps them)."""
    parts = ctx.dir / "parts"
    for i in range(cfg.n):
        part = parts / f"{i}.json"
        if part.exists():
            continue
        if cfg.fail_at == i:
            raise ValueError(f"record {i} is broken")
        time.sleep(cfg.delay)
        write_json(part, {"i": i, "value": cfg.scale * i * i})
    records = [json.loads((parts / f"{i}.json").read_text()) for i in range(cfg.n)]
    write_records(cfg.output, records)
    return {"counts": {"records": len(records)}}


class SumConfig(StageConfig):
    inputs: list[Path] = Field(description="record files")
    output: Path = Field(description="the sum")


@stage_kind("test-sum", SumConfig, fill="sum.json")
def total(cfg: SumConfig, ctx: StageContext) -> dict:
    value = sum(r["value"] for path in cfg.inputs for r in read_records(path))
    write_json(cfg.output, {"sum": value})
    return {"counts": {"sum": value}}
