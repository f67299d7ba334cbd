"""Group diversity: how many different final answers, and how many different reasoning paths, a group holds.

SCOPE's claim is about exploration: salvaging failures should keep a GRPO group's rollouts varied.
Two measures per group of responses to one prompt:

* **distinct answers**: the number of different final answers (``oxa.verify``'s extraction: the last
  ``\\boxed{}`` after ``</think>``, normalised); a response without one counts as the answer "none".
* **distinct paths**: the number of different reasoning paths, where a path is

  - in general (:func:`step_results`), the sequence of the steps' results: the last number each
    reasoning step states (with ``,`` thousands separators and trailing zeros of decimals removed),
    steps that state none skipped. Two solutions computing the same intermediate values in the same
    order follow the same path, however they word it;
  - in the synthetic world (:func:`synthetic_strategy`), the teacher strategy the response follows:
    the strategy whose correct solution has the most similar sequence of line shapes (each line with
    its numbers blanked out, so wrong values do not hide the strategy), or "other" when none is
    at least half similar.

:func:`diversity_metrics` averages both over groups for the RL log (``diversity/*`` keys), also as
shares of the group size (1.0: every response differs).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from oxa.prm.steps import StepSplit, split_steps

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
DIGITS = re.compile(r"\d+")
OTHER = "other"


def final_answer(response: str) -> str:
    """The normalised final answer, or "none"."""
    from oxa.verify import extract_answer, normalize_answer

    answer = extract_answer(response)
    return "none" if answer is None else re.sub(r"\s+", "", normalize_answer(answer))


def _number(text: str) -> str:
    text = text.replace(",", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def step_results(response: str, split: StepSplit = StepSplit()) -> tuple[str, ...]:
    """The general path: the last number of each reasoning step (the answer step excluded)."""
    out = []
    for step in split_steps(response, split).steps:
        numbers = NUMBER.findall(step.text)
        if numbers and not step.answer:
            out.append(_number(numbers[-1]))
    return tuple(out)


def _shapes(lines: Sequence[str]) -> list[str]:
    return [DIGITS.sub("#", line.strip()) for line in lines if line.strip()]


def synthetic_strategy(record: Mapping[str, Any], response: str, *, min_similarity: float = 0.5) -> str:
    """The synthetic-world strategy ``response`` follows (see the module docstring), or "other"."""
    from oxa.prm.checker import problem_of
    from oxa.synth.teacher import solve, strategies_for

    problem = problem_of(record)
    mine = _shapes(s.text for s in split_steps(response).steps if not s.answer)
    theirs = {name: _shapes(solve(problem, name).lines) for name in strategies_for(problem)}
    ratio, name = max(((difflib.SequenceMatcher(None, mine, lines, autojunk=False).ratio(), name)
                       for name, lines in theirs.items()), key=lambda x: x[0])
    return name if ratio >= min_similarity else OTHER


@dataclass(frozen=True)
class GroupDiversity:
    size: int
    distinct_answers: int
    distinct_paths: int


def group_diversity(responses: Sequence[str], *, path: Callable[[int, str], Any] | None = None) -> GroupDiversity:
    """Distinct answers and paths among one group's ``responses``; ``path(i, response)`` names response i's
    path (default: :func:`step_results`)."""
    path = path or (lambda i, r: step_results(r))
    return GroupDiversity(len(responses), len({final_answer(r) for r in responses}),
                          len({path(i, r) for i, r in enumerate(responses)}))


def synthetic_group_diversity(record: Mapping[str, Any], responses: Sequence[str]) -> GroupDiversity:
    """:func:`group_diversity` with the synthetic world's strategies as paths (``record``: the group's prompt record)."""
    return group_diversity(responses, path=lambda i, r: synthetic_strategy(record, r))


def diversity_metrics(groups: Sequence[GroupDiversity]) -> dict[str, float]:
    """Means over groups, for logging: counts and counts as a share of the group size."""
    if not groups:
        return {}
    return {
        "diversity/distinct_answers": mean(g.distinct_answers for g in groups),
        "diversity/distinct_paths": mean(g.distinct_paths for g in groups),
        "diversity/distinct_answers_share": mean(g.distinct_answers / g.size for g in groups),
        "diversity/distinct_paths_share": mean(g.distinct_paths / g.size for g in groups),
    }
