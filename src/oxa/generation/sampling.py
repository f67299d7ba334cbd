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

NUCLEUS_CANDIDATES = 1024  # tokens sorted per row for top-p before falling back to the whole vocabulary


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


def sampling_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The probabilities actually sampled from: softmax(logits / T), then the smallest set of
    most-likely tokens whose mass reaches ``top_p`` (always at least one), renormalised.

    ``temperature == 0`` is greedy decoding: all mass on the arg-max token.
    """
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1:
        return probs
    # The nucleus is almost always a few hundred tokens: sort only the top candidates when they hold
    # top_p of the mass in every row (then the result is exactly the full sort's), else the whole vocabulary.
    top = min(probs.shape[-1], NUCLEUS_CANDIDATES)
    sorted_p, order = probs.topk(top, dim=-1)
    if top < probs.shape[-1] and bool((sorted_p.sum(dim=-1) < top_p).any()):
        sorted_p, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p
    sorted_p = sorted_p.masked_fill(mass_before >= top_p, 0.0)  # the first token always survives
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return kept / kept.sum(dim=-1, keepdim=True)


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row by inverse CDF, row i using one uniform from ``generators[i]``."""
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators]).to(probs.device)
    cdf = probs.double().cumsum(dim=-1)
    target = (u * cdf[:, -1]).unsqueeze(-1)
    # first index whose cumulative mass exceeds the target: never a zero-probability token
    index = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)
