"""Teacher trajectories from a set's worked solutions: GSM8K's become ``<think>`` steps ``</think>`` and a
boxed answer, the response format of the OXA paper's teacher data (and what ``require_think`` grades).

The ``gsm8k-teacher`` stage kind writes them as an ordinary record file (id, query, answer, response)
that ``oxa verify``, ``oxa score`` and the rest read like any teacher data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field

from oxa.config import StageConfig
from oxa.errors import OxaError
from oxa.io import write_records
from oxa.pipeline.kinds import StageContext, stage_kind

_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: 48/2 = <<48/2=24>>24


def think_response(solution: str, answer: str) -> str:
    """``<think>`` + the solution's steps (calculator annotations and the ``#### answer`` line removed) +
    ``</think>`` + ``\\boxed{answer}``."""
    steps = [_CALCULATOR.sub("", line).strip() for line in solution.splitlines()]
    steps = [s for s in steps if s and not s.startswith("####")]
    return "<think>\n" + "\n".join(steps) + "\n</think>\n\n\\boxed{" + answer + "}"


class Gsm8kTeacherConfig(StageConfig):
    """Settings of the ``gsm8k-teacher`` stage."""

    source: str = Field("gsm8k-train", description="GSM8K-style problems with '#### answer' solutions: a set name "
                        "(gsm8k-train reads DATA_DIR/gsm8k/train.jsonl), a record file or hf:openai/gsm8k/main:train")
    data_dir: Path | None = Field(None, description="directory holding gsm8k/train.jsonl (default $OXA_DATA_DIR)")
    limit: int | None = Field(None, ge=1, description="only the first LIMIT problems")
    output: Path = Field(description="the teacher records (id, query, answer, response)")


def gsm8k_teacher_records(cfg: Gsm8kTeacherConfig) -> list[dict[str, Any]]:
    from oxa.data import load_benchmark

    rows = load_benchmark(cfg.source, data_dir=cfg.data_dir, limit=cfg.limit)
    missing = next((r["id"] for r in rows if not isinstance(r.get("solution"), str)), None)
    if missing is not None:
        raise OxaError(f"{cfg.source}: record {missing} has no '#### answer' solution to turn into a trajectory")
    return [{"id": r["id"], "query": r["query"], "answer": r["answer"],
             "response": think_response(r["solution"], r["answer"])} for r in rows]


@stage_kind("gsm8k-teacher", Gsm8kTeacherConfig)
def gsm8k_teacher(cfg: Gsm8kTeacherConfig, ctx: StageContext) -> dict[str, Any]:
    records = gsm8k_teacher_records(cfg)
    write_records(cfg.output, records)
    return {"counts": {"records": len(records)}}
