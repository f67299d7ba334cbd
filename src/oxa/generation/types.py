"""The two values every sampling backend exchanges with :func:`oxa.generation.generate_records`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """One sample to draw: ``key`` is its output position, ``query`` its query's index, ``seed`` its RNG seed."""

    key: int
    query: int
    seed: int


@dataclass(frozen=True)
class Sampled:
    """One finished sample. ``finish_reason`` is "stop" (EOS or a stop string) or "length".

    The entropies are token means over the sampled response (see :mod:`oxa.generation.sampling`);
    None where the backend cannot see the full distribution (vLLM returns only top-k log-probs).
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    entropy: float | None = None
    sampling_entropy: float | None = None
