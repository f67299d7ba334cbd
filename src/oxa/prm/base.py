"""What every process reward model offers: a probability per step that it is right, and the first error.

A PRM scores a batch of :class:`StepInput` (the question, the response's steps, and the data record
for PRMs that read more of it, such as the synthetic world's checker). :func:`judge` turns the scores
into a :class:`Judgement`: the first step scored below a threshold is the first error.

The default threshold is 0.5, the decision boundary of a 2-class head (and the value ProcessBench
uses for Qwen2.5-Math-PRM). The exact checker scores 1 or 0, so any threshold in (0, 1] gives the same
answer for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oxa.prm.steps import Steps, StepSplit, first_below, split_steps

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class StepInput:
    query: str
    steps: Steps
    record: Mapping[str, Any] = field(default_factory=dict)  # the data record the response belongs to


class PRM(ABC):
    """A process reward model. ``split`` is how it cuts responses into steps unless told otherwise."""

    split: StepSplit

    @abstractmethod
    def score(self, items: Sequence[StepInput]) -> list[list[float | None]]:
        """For each item, P(step is right) for each of its steps; None for a step it could not see (cut by a length cap)."""

    def inputs(self, queries: Sequence[str], responses: Sequence[str],
               records: Sequence[Mapping[str, Any]] | None = None, *, split: StepSplit | None = None) -> list[StepInput]:
        """Responses split by ``split`` (default: this PRM's :attr:`split`), ready for :meth:`score`."""
        records = records if records is not None else [{}] * len(queries)
        split = split or self.split
        return [StepInput(q, split_steps(r, split), rec) for q, r, rec in zip(queries, responses, records, strict=True)]


@dataclass(frozen=True)
class Judgement:
    steps: Steps
    scores: list[float | None]
    first_error: int | None  # index of the first step scored below the threshold; None if there is none

    @property
    def error_offset(self) -> int | None:
        """Character offset in the response where the first wrong step begins (cut the prefix here)."""
        return None if self.first_error is None else self.steps.offset(self.first_error)

    @property
    def relative_position(self) -> float | None:
        """Where the first error sits: the share of the steps that come before it (0: the first step is wrong)."""
        return None if self.first_error is None else self.first_error / len(self.steps)


def judge(prm: PRM, items: Sequence[StepInput], threshold: float = DEFAULT_THRESHOLD) -> list[Judgement]:
    """Score ``items`` with ``prm`` and locate each one's first error under ``threshold``."""
    return [Judgement(item.steps, scores, first_below(scores, threshold))
            for item, scores in zip(items, prm.score(items), strict=True)]
