"""Rollouts: drawing them with oxa's sampler, and the graded batch a rollout transform (SCOPE) may rewrite.

With ``rollout_backend: oxa`` the group's n copies of a prompt are prefilled once and share its KV cache,
finished rollouts leave the batch, and every rollout draws from its own random stream seeded by
(seed, optimizer step, its position in the global batch): the samples do not depend on batch size or on
an interruption, so a resumed run draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from oxa.generation import SamplingParams, TransformersBackend, sample_seed


@dataclass
class Rollout:
    """One rewritten rollout a transform puts into a batch: its tokens, text, rewards [reward functions] and
    per-token off-policy flags."""

    completion_ids: list[int]
    completion: str
    rewards: torch.Tensor
    off_policy: list[bool]


@dataclass
class RolloutBatch:
    """This process's graded rollouts, before advantages are computed.

    Row i is rollout i of ``records`` (the prompt record it answers, repeated n times per group, groups
    whole on each process). ``rewards`` is [rows, reward functions]. A transform may replace rows -
    completion ids, text and rewards together (:meth:`replace`) - or add rows to their groups
    (:meth:`join`), and mark rewritten tokens in ``off_policy`` (one list of booleans per row, as long as
    its completion ids; None means all on-policy), which the policy loss treats with ``off_policy_tokens``.
    ``logprobs`` are the sampler's per-token log-probabilities when the backend reports them (vLLM), else
    None. ``metrics`` go to the step's log (e.g. ``salvage/rows``).

    After :meth:`join`, groups are blocks of ``group_size`` rows (None: the trainer's n) whose unused slots
    are ``padding`` rows: reward NaN, so TRL leaves them out of the group's mean and std and gives them
    advantage 0, and the trainer masks them out of the loss.
    """

    records: list[dict[str, Any]]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    completions: list[Any]
    rewards: torch.Tensor
    logprobs: list[list[float]] | None = None
    off_policy: list[list[bool]] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    group_size: int | None = None
    padding: list[bool] | None = None

    def groups(self, n: int) -> list[list[int]]:
        """The rows of each group, padding left out (``n``: the trainer's group size)."""
        size = self.group_size or n
        pad = self.padding or [False] * len(self.completion_ids)
        return [[i for i in range(g, g + size) if not pad[i]] for g in range(0, len(self.completion_ids), size)]

    def replace(self, i: int, rollout: Rollout) -> None:
        """Rollout ``rollout`` takes row ``i``'s place in its group."""
        self.completion_ids[i] = rollout.completion_ids
        self.completions[i] = rollout.completion
        self.rewards[i] = rollout.rewards.to(self.rewards.device, self.rewards.dtype)
        if self.off_policy is None:
            self.off_policy = [[False] * len(c) for c in self.completion_ids]
        self.off_policy[i] = rollout.off_policy

    def join(self, joined: Mapping[int, Rollout], n: int, slots: int, eos: int) -> None:
        """Lay the batch out again as groups of ``n + slots`` rows: each group's n rollouts, then the rollouts
        that join it (``joined[i]`` joins row i's group), then padding rows (the prompt and an EOS)."""
        if len(self.completion_ids) % n:
            raise ValueError(f"{len(self.completion_ids)} rows are not whole groups of {n}")
        if self.logprobs is not None:
            raise ValueError("joined rollouts have no sampler log-probabilities (a vLLM batch cannot be joined)")
        on = self.off_policy or [[False] * len(c) for c in self.completion_ids]
        rows: list[tuple[int, Rollout | None]] = []  # (source row, a joined rollout or None for the row itself)
        padding: list[bool] = []
        for g in range(0, len(self.completion_ids), n):
            extra = [(i, joined[i]) for i in range(g, g + n) if i in joined]
            if len(extra) > slots:
                raise ValueError(f"group at row {g}: {len(extra)} rollouts join it but it has {slots} slots")
            rows += [(i, None) for i in range(g, g + n)] + extra + [(g, None)] * (slots - len(extra))
            padding += [False] * (n + len(extra)) + [True] * (slots - len(extra))
        nan = torch.full_like(self.rewards[0], float("nan"))
        layout = list(zip(rows, padding))
        self.records = [self.records[i] for (i, _), _ in layout]
        self.prompt_ids = [self.prompt_ids[i] for (i, _), _ in layout]
        self.completion_ids = [[eos] if pad else r.completion_ids if r else self.completion_ids[i]
                               for (i, r), pad in layout]
        self.completions = ["" if pad else r.completion if r else self.completions[i] for (i, r), pad in layout]
        self.rewards = torch.stack([nan if pad else r.rewards.to(nan) if r else self.rewards[i]
                                    for (i, r), pad in layout])
        self.off_policy = [[False] if pad else r.off_policy if r else on[i] for (i, r), pad in layout]
        self.group_size, self.padding = n + slots, padding


def join_slots(wanted: int, groups: int, chunks: int) -> int:
    """Rows each group gains under join: ``wanted``, rounded up so that the batch of ``groups`` groups still
    splits into ``chunks`` equal micro-batches (TRL splits a rollout batch evenly and drops a remainder; the
    n rows of each group already split evenly)."""
    step = chunks // math.gcd(groups, chunks)
    return -(-wanted // step) * step


RolloutTransform = Callable[[RolloutBatch, Any], RolloutBatch]
"""``transform(batch, trainer) -> batch``: called on every process with its own rows, after grading and
before advantages (the trainer gives access to the policy, the tokenizer and the reward functions;
:func:`oxa.rl.salvage.grade` grades rewritten rows as the rollouts were graded)."""


def rollout_seeds(seed: int, step: int, first: int, count: int) -> list[int]:
    """Seeds of rollouts ``first .. first + count - 1`` (positions in the global rollout batch) at ``step``."""
    return [sample_seed(seed, f"rl-step-{step}", first + i) for i in range(count)]


def sample_rollouts(model, tokenizer, prompt_ids: list[list[int]], seeds: list[int], params: SamplingParams, *,
                    batch_size: int) -> list[list[int]]:
    """Completion token ids (EOS included when emitted) for each (prompt, seed), ``batch_size`` at a time;
    equal prompts within a batch are prefilled once."""
    backend = TransformersBackend(model, tokenizer, batch_size=batch_size)
    out: list[list[int]] = []
    for start in range(0, len(prompt_ids), batch_size):
        sampled = backend.sample_batch(prompt_ids[start:start + batch_size], seeds[start:start + batch_size], params)
        out += [s.token_ids for s in sampled]
    return out
