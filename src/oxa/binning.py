"""Equal-width perplexity bins: Algorithm 1 samples over them, ``oxa select`` and the plots draw them.

Shared by :mod:`oxa.selection` and :mod:`oxa.plots`, and importing neither, so the two do not import
each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from oxa.errors import OxaError

EDGE_TOLERANCE = 1e-9
"""In units of bins: a PPL within this of a bin's lower edge belongs to that bin (2.5 at width 0.05
is bin 30 even though (2.5 - 1.0) / 0.05 may round below 30); the reference code adds the same 1e-9."""


@dataclass(frozen=True)
class Binning:
    """Equal-width PPL bins over ``[lo, hi]``: M = ceil((hi - lo) / width) bins, ``hi`` in the last one."""

    lo: float
    hi: float
    width: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.hi > self.lo):
            raise OxaError(f"PPL range must satisfy min < max, got [{self.lo}, {self.hi}]")
        if not (self.width > 0 and math.isfinite(self.width)):
            raise OxaError(f"bin width must be positive, got {self.width}")

    @property
    def n_bins(self) -> int:
        return max(1, math.ceil((self.hi - self.lo) / self.width - EDGE_TOLERANCE))

    @property
    def edges(self) -> np.ndarray:
        return self.lo + self.width * np.arange(self.n_bins + 1)

    @property
    def centres(self) -> list[float]:
        return [self.lo + (i + 0.5) * self.width for i in range(self.n_bins)]

    def index(self, ppl: np.ndarray) -> np.ndarray:
        """Bin of each PPL: floor((ppl - lo) / width) up to the edge tolerance; -1 outside [lo, hi] or NaN."""
        inside = (ppl >= self.lo) & (ppl <= self.hi)  # NaN compares False
        scaled = np.where(inside, (ppl - self.lo) / self.width, 0.0)
        idx = np.minimum(np.floor(scaled + EDGE_TOLERANCE).astype(np.int64), self.n_bins - 1)
        return np.where(inside, idx, -1)

    def counts(self, ppl: np.ndarray) -> np.ndarray:
        idx = self.index(ppl)
        return np.bincount(idx[idx >= 0], minlength=self.n_bins)


def display_binning(ppl: np.ndarray, width: float) -> Binning:
    """Bins for showing a non-Gaussian selection: the pool's PPL range (to its 99.9th percentile), <= 200 bins."""
    if len(ppl) == 0:
        return Binning(1.0, 5.0, width)
    lo = math.floor(float(ppl.min()) / width) * width
    hi = max(lo + width, math.ceil(float(np.quantile(ppl, 0.999)) / width) * width)
    width = max(width, (hi - lo) / 200)
    return Binning(lo, hi, width)
