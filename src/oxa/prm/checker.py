"""The synthetic world's step checker as a PRM: exact, scores 1 (right) or 0 (wrong) per step.

Steps are the lines of the reasoning plus the answer after ``</think>``. A line holding arithmetic is
judged by :func:`oxa.synth.checker.check_line` (its arithmetic holds and its value is on track); a prose
line has nothing to get wrong and scores 1; the answer step scores 1 when its boxed answer is the gold
one. So the first step scored 0 is :func:`oxa.synth.checker.check_steps`'s first error, counted over all
lines instead of only the arithmetic ones. The record must be a synthetic-world record (it carries
``problem``, ``family``, ``difficulty`` and ``answer``).
"""

from __future__ import annotations

from collections.abc import Sequence

from oxa.errors import RecordError
from oxa.prm.base import PRM, StepInput
from oxa.prm.steps import StepSplit
from oxa.synth.checker import BOXED, check_line
from oxa.synth.problems import Problem
from oxa.synth.teacher import reference_values

SYNTH_SPLIT = StepSplit(separator="\n", scope="think")


def problem_of(record, where: str = "record") -> Problem:
    """The synthetic problem a record was made from, or a RecordError naming what is missing."""
    missing = [k for k in ("problem", "family", "difficulty", "answer", "query") if k not in record]
    if missing:
        raise RecordError(f"{where}: the synthetic step checker needs a synthetic-world record; "
                          f"missing field(s) {', '.join(missing)}")
    return Problem.from_record(dict(record))


class CheckerPRM(PRM):
    """Exact step scores from the synthetic world's rule-based checker."""

    name = "checker"

    def __init__(self, split: StepSplit = SYNTH_SPLIT):
        self.split = split

    def score(self, items: Sequence[StepInput]) -> list[list[float | None]]:
        out = []
        for n, item in enumerate(items):
            problem = problem_of(item.record, f"item {n + 1}")
            on_track = reference_values(problem)
            scores: list[float | None] = []
            for step in item.steps.steps:
                if step.answer:
                    boxed = BOXED.findall(step.text)
                    ok = bool(boxed) and int(boxed[-1]) == problem.answer
                else:
                    check = check_line(step.text, on_track)
                    ok = check is None or check.ok
                scores.append(1.0 if ok else 0.0)
            out.append(scores)
        return out
