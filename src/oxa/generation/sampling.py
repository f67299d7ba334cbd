"""One sampling step, written out: temperature, nucleus (top-p) filtering, per-sample random streams.

Each sample owns a ``torch.Generator`` seeded from (seed, query id, sample index), and draws exactly one
uniform number per generated token. The token is found by inverse-CDF lookup in the filtered
distribution. So a sample's tokens do not depend on which other samples share its batch, in which order
batches run, or whether a run was interrupted and resumed: only on its own seed and its own logits.

Two entropies are recorded per token, both over the model's full next-token distribution at the
sampled position:

* ``entropy``: of the raw policy (softmax of the logits, temperature 1, no top-p). This is what verl
  logs as the policy entropy and what the paper reports.
* ``sampling_entropy``: of the distribution actually sampled from (temperature-scaled, top-p
  truncated and renormalised).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

FIRST_CANDIDATES = 64  # top tokens per row looked at first for the nucleus; x8 until they hold top_p of the mass


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; the defaults are the paper's evaluation settings."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 32768
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def sample_seed(seed: int, query_id: str, sample: int) -> int:
    """A 63-bit seed for one sample's random stream, stable across runs, machines and batchings."""
    digest = hashlib.sha256(f"{seed}\x00{query_id}\x00{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def entropy_of_logits(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) = -sum_v p_v log p_v per row, in fp32 (0 * log 0 taken as 0)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).nan_to_num().sum(dim=-1)


def nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The distribution actually sampled from, as (probabilities, token ids), each ``[rows, k]``: softmax(logits
    / T), then the smallest set of most-likely tokens whose mass reaches ``top_p`` (always at least one),
    renormalised; tokens outside it have probability 0. ``temperature == 0`` is greedy decoding.

    The nucleus is almost always a few dozen tokens, so only the top ``k`` logits are sorted (a top-k
    prefilter; the softmax normaliser comes from a logsumexp over the whole vocabulary). While some row's
    top ``k`` hold less than ``top_p``, ``k`` grows eightfold, up to the whole vocabulary: the result is
    exactly the full sort's, at a fraction of its cost (a full sort of 49k logits costs ~10x a top-64).
    """
    logits = logits.float()
    if temperature == 0:
        return logits.new_ones((logits.shape[0], 1)), logits.argmax(dim=-1, keepdim=True)
    scaled = logits / temperature
    vocab = scaled.shape[-1]
    if top_p >= 1:
        return torch.softmax(scaled, dim=-1), torch.arange(vocab, device=scaled.device).expand_as(scaled)
    log_norm = scaled.logsumexp(dim=-1, keepdim=True)
    k = min(vocab, FIRST_CANDIDATES)
    while True:
        top, ids = scaled.topk(k, dim=-1)
        probs = (top - log_norm).exp()
        if k == vocab or bool((probs.sum(dim=-1) >= top_p).all()):
            break
        k = min(vocab, 8 * k)
    mass_before = probs.cumsum(dim=-1) - probs
    probs = probs.masked_fill(mass_before >= top_p, 0.0)  # the first token always survives
    return probs / probs.sum(dim=-1, keepdim=True), ids


def sampling_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """:func:`nucleus` as a dense ``[rows, vocab]`` distribution."""
    probs, ids = nucleus(logits, temperature, top_p)
    return torch.zeros(logits.shape, device=logits.device).scatter(-1, ids, probs)


def draw(probs: torch.Tensor, generators: list[torch.Generator], ids: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row by inverse CDF in token-id order, row i using one uniform from ``generators[i]``.

    ``probs`` is a dense distribution over the vocabulary, or, with ``ids``, over those token ids only (as
    :func:`nucleus` returns them); both give the same token for the same uniform.
    """
    if ids is not None:
        ids, by_id = ids.sort(dim=-1)
        probs = probs.gather(-1, by_id)
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators]).to(probs.device)
    cdf = probs.double().cumsum(dim=-1)
    target = (u * cdf[:, -1]).unsqueeze(-1)
    # first index whose cumulative mass exceeds the target: never a zero-probability token
    index = torch.searchsorted(cdf, target, right=True).clamp_(max=probs.shape[-1] - 1)
    return index.squeeze(-1) if ids is None else ids.gather(-1, index).squeeze(-1)
