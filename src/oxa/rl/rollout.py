"""Rollouts: drawing them with oxa's sampler, and the graded batch a rollout transform (SCOPE) may rewrite.

With ``rollout_backend: oxa`` the group's n copies of a prompt are prefilled once and share its KV cache,
finished rollouts leave the batch, and every rollout draws from its own random stream seeded by
(seed, optimizer step, its position in the global batch): the samples do not depend on batch size or on
an interruption, so a resumed run draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from oxa.generation import SamplingParams, TransformersBackend, sample_seed


@dataclass
class RolloutBatch:
    """This process's graded rollouts, before advantages are computed.

    Row i is rollout i of ``records`` (the prompt record it answers, repeated n times per group, groups
    whole on each process). ``rewards`` is [rows, reward functions]. A transform may replace rows -
    completion ids, text and rewards together - and mark replaced tokens in ``off_policy`` (one list of
    booleans per row, as long as its completion ids; None means all on-policy), which the policy loss
    treats with ``off_policy_tokens``. ``logprobs`` are the sampler's per-token log-probabilities when the
    backend reports them (vLLM), else None. ``metrics`` go to the step's log (e.g. ``salvage/rows``).
    """

    records: list[dict[str, Any]]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    completions: list[Any]
    rewards: torch.Tensor
    logprobs: list[list[float]] | None = None
    off_policy: list[list[bool]] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


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
