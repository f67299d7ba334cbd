"""The RLVR reward: 1 when a rollout's final answer equals the gold answer, else 0 - the paper's rule.

Two grading rules (``RewardConfig.mode``):

* ``math_verify`` (the paper's, default): what the authors ran in verl - ``math_verify.compute_score``
  on the text after the last ``</think>``. The gold is wrapped as ``\\boxed{gold}`` and read with
  ``LatexExtractionConfig``; the prediction is read with ``ExprExtractionConfig`` and
  ``LatexExtractionConfig``, so a boxed answer *or* a plain final expression ("... so x = 5") counts.
  This is math-verify's ``math_metric`` with those targets, with its signal timeouts replaced by the
  pool's deadline (below).
* ``boxed``: ``oxa verify``'s stricter rule - only the last ``\\boxed{}`` after ``</think>`` counts
  (:func:`oxa.verify.extract_answer` + :func:`oxa.verify.grade_answer`).

A response without ``</think>`` gets 0 (``require_think``, the paper's edit of verl's scorer); with it
off, the whole response is graded, except one that opened ``<think>`` and never closed it (cut off
mid-reasoning), which still gets 0. Golds are read as ``oxa verify`` reads them
(:func:`oxa.verify.gold_answers`): text, a number, or a list where any may match (Minerva).

Grading runs in :class:`oxa.verify.GradingPool`: forked workers with a hard per-item deadline, so an
answer that sends sympy into a hang (``\\boxed{10^{10^{10^{10}}}}``) costs at most ``timeout`` seconds,
gets 0, is counted as ``timeout`` and never stalls a step. Identical (answer, gold) pairs of one call -
frequent with n rollouts per prompt - are graded once.

Every graded rollout has one status: ``correct``, ``incorrect``, ``no_think`` (no ``</think>``),
``unparsable`` (no answer math-verify can read), ``timeout``, ``error`` (a gold math-verify cannot read,
or a grader crash). :meth:`MathReward.pop_stats` returns their counts for per-step logging.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field

from oxa.config import StageConfig
from oxa.verify import GradingPool, Gold, answer_region, extract_answer, gold_answers, grade_answer, quick_status

RewardMode = Literal["math_verify", "boxed"]
RewardStatus = Literal["correct", "incorrect", "no_think", "unparsable", "timeout", "error"]
REWARD_STATUSES: tuple[RewardStatus, ...] = ("correct", "incorrect", "no_think", "unparsable", "timeout", "error")

# math-verify's timeouts are off (the pool enforces the deadline); its warnings about that are noise
logging.getLogger("math_verify").setLevel(logging.ERROR)


class RewardConfig(StageConfig):
    """Settings of the verifiable math reward."""

    mode: RewardMode = Field(
        "math_verify",
        description="math_verify: the paper's reward (verl's math_verify.compute_score: a boxed answer or a plain "
                    "final expression after </think>); boxed: oxa verify's stricter rule (the last \\boxed{} only)")
    require_think: bool = Field(
        True, description="give 0 to a response without </think> (the paper's rule); off: grade the whole response")
    workers: int = Field(2, ge=1, description="grading processes")
    timeout: float = Field(
        5.0, gt=0, description="seconds one answer may take to grade; past it the answer gets 0 (status timeout)")


@dataclass(frozen=True)
class RewardResult:
    """The reward of one rollout and why (one of :data:`REWARD_STATUSES`)."""

    reward: float
    status: str


# ------------------------------------------------------------------------ grading in the worker processes


@lru_cache(maxsize=1)
def _targets() -> tuple[tuple, tuple]:
    """(gold, prediction) extraction targets of verl's ``math_verify.compute_score``."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return (LatexExtractionConfig(),), (ExprExtractionConfig(), LatexExtractionConfig())


@lru_cache(maxsize=8192)
def _parsed_gold(gold: str) -> tuple:
    from math_verify import parse

    return tuple(parse("\\boxed{" + gold + "}", _targets()[0], parsing_timeout=None))


def grade_math_verify(region: str, golds: tuple[str, ...]) -> str:
    """math-verify's ``math_metric`` verdict on one answer region: ``correct`` if the prediction it
    extracts (boxed or a plain final expression) equals any gold, ``incorrect``, ``unparsable`` if it
    extracts nothing, ``error`` if no gold is readable (``math_metric`` raises there; verl scores 0).
    Runs without math-verify's signal timeouts: call it under the pool's deadline."""
    from math_verify import parse, verify

    try:
        parsed_golds = [g for g in map(_parsed_gold, golds) if g]
        if not parsed_golds:
            return "error"
        pred = parse(region, _targets()[1], parsing_timeout=None)
        if not pred:
            return "unparsable"
        hit = any(verify(list(gold), pred, timeout_seconds=None) for gold in parsed_golds)
    except Exception:  # a sympy/antlr bug on one odd answer: that answer's problem only
        return "error"
    return "correct" if hit else "incorrect"


# ------------------------------------------------------------------------------------------- the reward


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or TRL's conversational form (a list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and all(isinstance(m, dict) for m in completion):
        parts = [m.get("content") for m in completion]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise TypeError(f"a completion must be text or a list of chat messages with text content, got {completion!r:.200}")


class MathReward:
    """The verifiable math reward as a TRL reward function (``reward_funcs=[MathReward(cfg)]``).

    TRL calls it with the batch's ``prompts``, ``completions`` and every dataset column, of which it
    reads ``answer`` (the gold). Keeps a pool of grading processes between calls; :meth:`close` (or
    leaving a ``with`` block, or garbage collection) stops them. One caller at a time: it is not
    thread-safe (the verl module serialises its calls with a lock).
    """

    __name__ = "math_reward"  # TRL names the logged reward after it

    def __init__(self, cfg: RewardConfig | None = None):
        self.cfg = cfg or RewardConfig()
        grade = grade_math_verify if self.cfg.mode == "math_verify" else grade_answer
        self._pool = GradingPool(self.cfg.workers, self.cfg.timeout, grade=grade)
        self._close = weakref.finalize(self, self._pool.__exit__, None, None, None)
        self._counts: Counter[str] = Counter()

    def __call__(self, prompts: Sequence | None = None, completions: Sequence | None = None,
                 answer: Sequence[Gold] | None = None, **kwargs: Any) -> list[float]:
        if completions is None or answer is None:
            raise ValueError("math_reward needs completions and the dataset's 'answer' column (the gold answers)")
        return [r.reward for r in self.grade([completion_text(c) for c in completions], answer)]

    def grade(self, completions: Sequence[str], golds: Sequence[Gold]) -> list[RewardResult]:
        """The reward and status of ``completions[i]`` against ``golds[i]``, in order.

        Raises ValueError for a malformed gold (empty, not text or numbers): a data error, not a miss.
        """
        if len(completions) != len(golds):
            raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
        keys: list[tuple[str | None, tuple[str, ...]] | None] = []
        for i, (text, gold) in enumerate(zip(completions, golds)):
            try:
                golds_i = gold_answers(gold)
            except ValueError as e:
                raise ValueError(f"gold answer {i}: {e}") from None
            region = answer_region(text, require_think=self.cfg.require_think)
            if region is None:
                keys.append(None)
            elif self.cfg.mode == "math_verify":
                keys.append((region, golds_i))
            else:
                keys.append((extract_answer(text, require_think=self.cfg.require_think), golds_i))
        statuses = self._grade_distinct(keys)
        results = [RewardResult(1.0 if s == "correct" else 0.0, s) for s in statuses]
        self._counts.update(statuses)
        return results

    def _grade_distinct(self, keys: list) -> list[str]:
        """Statuses of ``keys`` (None: no answer region), grading each distinct pair once."""
        status: dict[tuple, str] = {}
        for key in dict.fromkeys(k for k in keys if k is not None):
            if key[0] is None:  # boxed mode, no box
                status[key] = "unparsable"
            elif self.cfg.mode == "boxed" and (quick := quick_status(*key)) is not None:
                status[key] = quick
        todo = [k for k in dict.fromkeys(keys) if k is not None and k not in status]
        status.update(zip(todo, self._pool.grade(todo)))
        return ["no_think" if k is None else status[k] for k in keys]

    def pop_stats(self) -> dict[str, int]:
        """Rollouts per status since the last call (every status, zeros included), then reset."""
        counts, self._counts = self._counts, Counter()
        return {s: counts.get(s, 0) for s in REWARD_STATUSES}

    @property
    def workers_killed(self) -> int:
        """Grading workers killed at the deadline so far."""
        return self._pool.killed

    def close(self) -> None:
        self._close()

    def __enter__(self) -> MathReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
