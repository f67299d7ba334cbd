"""Splitting a response into steps, with character offsets so a prefix can be cut exactly at a step.

A *step* is a non-blank piece of the response between two separators, stripped of surrounding
whitespace; its ``start``/``end`` are character offsets into the response, so ``response[:start]``
is everything before it (earlier steps, their separators, an opening ``<think>``) and a prefix cut
there ends exactly where the step began.

Separators in use:

* ``"\\n"``: one step per line - the synthetic world's format, and TRL's PRM trainer's separator;
* ``"\\n\\n"``: one step per paragraph - what Qwen2.5-Math-PRM and ProcessBench expect.

With ``scope="think"`` (the default) a response in the paper's format, ``<think>`` reasoning
``</think>`` answer, is split inside the reasoning, and the text after ``</think>`` is one last step
marked ``answer``: a wrong boxed answer after right reasoning is an error at that step. Without a
``</think>`` the whole text after ``<think>`` (or the whole response) is reasoning and there is no
answer step. ``scope="all"`` splits the whole response, tags included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from oxa.config import StageConfig

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class StepSplit(StageConfig):
    """How a response is cut into steps."""

    separator: str = Field("\n", min_length=1, description="text between two steps: \"\\n\" one step per line, "
                           "\"\\n\\n\" one per paragraph (Qwen2.5-Math-PRM, ProcessBench)")
    scope: Literal["think", "all"] = Field(
        "think", description="think: split the reasoning inside <think>...</think> and make the text after "
        "</think> one last (answer) step; all: split the whole response")


@dataclass(frozen=True)
class Step:
    text: str  # the step, stripped of surrounding whitespace
    start: int  # character offset of its first character in the response
    end: int  # offset just past its last character
    answer: bool = False  # the text after </think>


@dataclass(frozen=True)
class Steps:
    """A response and its steps."""

    response: str
    steps: tuple[Step, ...]

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.steps]

    def offset(self, k: int) -> int:
        """Where step ``k`` begins; ``len(self)`` means the end of the response."""
        return self.steps[k].start if k < len(self.steps) else len(self.response)

    def prefix(self, k: int) -> str:
        """The response before step ``k``: steps ``0..k-1`` with their separators, up to where step ``k`` begins."""
        return self.response[: self.offset(k)]


def _pieces(text: str, base: int, separator: str, answer: bool = False) -> list[Step]:
    out, pos = [], 0
    while pos <= len(text):
        cut = text.find(separator, pos)
        piece_end = len(text) if cut < 0 else cut
        piece = text[pos:piece_end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            stripped = piece.strip()
            start = base + pos + lead
            out.append(Step(stripped, start, start + len(stripped), answer))
        if cut < 0:
            break
        pos = cut + len(separator)
    return out


def split_steps(response: str, split: StepSplit = StepSplit()) -> Steps:
    """The steps of ``response`` under ``split`` (see the module docstring)."""
    if split.scope == "all":
        return Steps(response, tuple(_pieces(response, 0, split.separator)))
    close = response.rfind(THINK_CLOSE)
    if close < 0:
        opened = response.find(THINK_OPEN)
        begin = 0 if opened < 0 else opened + len(THINK_OPEN)
        return Steps(response, tuple(_pieces(response[begin:], begin, split.separator)))
    opened = response.find(THINK_OPEN, 0, close)
    begin = 0 if opened < 0 else opened + len(THINK_OPEN)
    steps = _pieces(response[begin:close], begin, split.separator)
    tail_start = close + len(THINK_CLOSE)
    tail = response[tail_start:]
    if tail.strip():
        lead = len(tail) - len(tail.lstrip())
        start = tail_start + lead
        steps.append(Step(tail.strip(), start, start + len(tail.strip()), answer=True))
    return Steps(response, tuple(steps))


def join_steps(texts: list[str], separator: str) -> Steps:
    """Steps given as a list (as in ProcessBench's ``steps`` field), joined by ``separator`` into one response."""
    steps, pos = [], 0
    for i, text in enumerate(texts):
        if i:
            pos += len(separator)
        steps.append(Step(text, pos, pos + len(text)))
        pos += len(text)
    return Steps(separator.join(texts), tuple(steps))


def first_below(scores: list[float | None], threshold: float) -> int | None:
    """The index of the first step whose score is below ``threshold`` (unscored steps never count), else None."""
    return next((i for i, s in enumerate(scores) if s is not None and s < threshold), None)
