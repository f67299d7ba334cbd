"""Grading one extracted answer against its golds, and the statuses a graded item can get:

* ``correct`` / ``incorrect``: an answer was found and math-verify judged it;
* ``unparsable``: no answer to grade: empty response, no ``\\boxed{}`` after the reasoning, a
  ``<think>`` that was never closed (a response cut off mid-reasoning), or a box math-verify cannot read;
* ``timeout``: grading exceeded the per-item deadline (or crashed its worker).

math-verify compares gold first (``verify(gold, pred)`` is not symmetric). Its own timeouts are off
here: :class:`oxa.verify.pool.GradingPool` enforces the deadline.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from oxa.verify.extract import normalize_answer

Status = Literal["correct", "incorrect", "unparsable", "timeout"]
STATUSES: tuple[Status, ...] = ("correct", "incorrect", "unparsable", "timeout")


@dataclass(frozen=True)
class Verdict:
    """The outcome of grading one response: its status and the answer extracted from it (None if none)."""

    status: Status
    pred: str | None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# math-verify's signal timeouts are off on purpose (the pool enforces the deadline): its warning about
# that, and its per-item debug logging, are noise
logging.getLogger("math_verify").setLevel(logging.ERROR)

_INTEGER = re.compile(r"-?\d{1,100}")


def quick_status(pred: str, golds: tuple[str, ...]) -> Status | None:
    """The verdict where math-verify's is known without sympy, else None: an answer written exactly as
    a gold is correct, and plain integers compare by value (``025`` = ``25``). Most answers of integer
    benchmarks (AIME, GSM8K) and most correct answers end here, at string speed in the parent."""
    p = normalize_answer(pred)
    if p in golds:
        return "correct"
    if _INTEGER.fullmatch(p) and all(_INTEGER.fullmatch(g) for g in golds):
        return "correct" if any(int(p) == int(g) for g in golds) else "incorrect"
    return None


@lru_cache(maxsize=8192)
def _parsed(answer: str) -> tuple:
    from math_verify import parse

    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def grade_answer(pred: str | None, golds: tuple[str, ...]) -> Status:
    """Grade one extracted answer against normalised golds, in this process and without a deadline
    (the pool supplies that). A gold math-verify cannot parse is compared as a string."""
    from math_verify import verify

    if pred is None:
        return "unparsable"
    target = _parsed(normalize_answer(pred))
    if not target:
        return "unparsable"
    gold = [x for g in golds for x in (_parsed(g) or (g,))]
    return "correct" if verify(gold, list(target), timeout_seconds=None) else "incorrect"


Task = tuple[str | None, tuple[str, ...]]  # (extracted answer, normalised golds)


def summarize(verdicts: Sequence[Status]) -> dict[str, Any]:
    """Counts per status and the accuracy (correct / all records, unparsable and timed-out ones included)."""
    counts = Counter(verdicts)
    n = len(verdicts)
    return {"records": n, **{s: counts.get(s, 0) for s in STATUSES}, "accuracy": counts.get("correct", 0) / n if n else None}
