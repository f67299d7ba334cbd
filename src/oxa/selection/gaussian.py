"""Algorithm 1 of the paper (OXA_MLE): Gaussian-guided PPL sampling, with a global per-query cap.

PPL bins of width ``w`` over ``[ppl_min, ppl_max]``; bin i gets ``T_i = floor(N p_i)`` (+1 for the
largest remainders) with ``p_i`` the normal density at the bin centre normalised over the bins; bins
are walked low to high PPL, longest responses first, and the per-query count is global across bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oxa.binning import Binning
from oxa.errors import OxaError
from oxa.selection.columns import Columns
from oxa.selection.result import Selection, as_columns, check_sizes, eligible_pool, finish
from oxa.selection.walk import seeded_order, take_capped


def gaussian_targets(n: int, binning: Binning, *, mu: float, sigma: float) -> np.ndarray:
    """Per-bin targets summing to ``n``: floor(n * d_i / sum d), remainders +1 to the largest fractions.

    d_i is the normal density at bin centre i. Computed in plain Python floats in the reference code's
    order of operations, so ties between mirror-image bins break the same way (lower bin first).
    """
    if not sigma > 0:
        raise OxaError(f"sigma must be positive, got {sigma}")
    if n < 0:
        raise OxaError(f"n must be >= 0, got {n}")
    density = [(1.0 / (sigma * math.sqrt(2 * math.pi))) * math.exp(-0.5 * ((x - mu) / sigma) ** 2)
               for x in binning.centres]
    total = sum(density)
    if total == 0:
        raise OxaError(f"the Gaussian (mu={mu}, sigma={sigma}) has no mass in [{binning.lo}, {binning.hi}]")
    desired = [d / total * n for d in density]
    targets = [math.floor(x) for x in desired]
    by_fraction = sorted(range(len(desired)), key=lambda i: desired[i] - math.floor(desired[i]), reverse=True)
    for i in by_fraction[: n - sum(targets)]:
        targets[i] += 1
    return np.array(targets, dtype=np.int64)


def _descending_key(length: np.ndarray) -> np.ndarray:
    """Small non-negative integers ordering ``length`` from longest to shortest (equal lengths equal):
    ``max - length`` for token or character counts, else the rank among the distinct lengths."""
    if len(length) and length.min() >= 0 and length.max() < 2**31 and (np.floor(length) == length).all():
        return (length.max() - length).astype(np.int64)
    _, rank = np.unique(length, return_inverse=True)
    return rank.max(initial=0) - rank.reshape(-1).astype(np.int64)


@dataclass
class GaussianPick:
    indices: np.ndarray  # selected record indices, in selection order
    moved_in: np.ndarray  # per bin: selections made there to cover other bins' shortfall
    skipped_cap: int


def gaussian_pick(
    bins: np.ndarray,
    length: np.ndarray,
    group: np.ndarray,
    targets: np.ndarray,
    *,
    max_per_query: int,
    seed: int,
    redistribute: bool,
) -> GaussianPick:
    """Algorithm 1's step 3 on arrays: bins low to high, longest first (random ties), global query cap.

    With ``redistribute``, after that pass each short bin (low to high) hands its shortfall to the
    nearest bins that can still supply records (ties: the bin with the larger target, then the lower),
    continuing each such bin's longest-first walk under the same cap.
    """
    n_bins = len(targets)
    inside = np.flatnonzero(bins >= 0)
    longest_first = _descending_key(length[inside])
    walk_key = bins[inside] * (longest_first.max(initial=0) + 1) + longest_first  # (bin, longest first)
    order = inside[seeded_order(len(inside), seed, walk_key)]
    starts = np.searchsorted(bins[order], np.arange(n_bins + 1))
    room = np.full(int(group.max()) + 1 if len(group) else 0, max_per_query, dtype=np.int64)
    chosen = np.zeros(len(bins), dtype=bool)
    achieved = np.zeros(n_bins, dtype=np.int64)
    moved_in = np.zeros(n_bins, dtype=np.int64)
    picks: list[np.ndarray] = []

    def take(b: int, k: int) -> tuple[int, int]:
        """Continue bin b's walk for up to k more records; (kept, passed over for the cap)."""
        segment = order[starts[b] : starts[b + 1]]
        segment = segment[~chosen[segment]]
        kept, passed = take_capped(segment, group, room, k)
        chosen[kept] = True
        np.subtract.at(room, group[kept], 1)
        achieved[b] += len(kept)
        picks.append(kept)
        return len(kept), passed

    skipped = sum(take(b, int(targets[b]))[1] for b in range(n_bins) if targets[b] > 0)

    if redistribute:
        exhausted = achieved < targets
        for b in np.flatnonzero(exhausted):
            need = int(targets[b] - achieved[b])
            donors = sorted((j for j in range(n_bins) if j != b), key=lambda j: (abs(j - b), -targets[j], j))
            for j in donors:
                if need == 0:
                    break
                if exhausted[j]:
                    continue
                got, _ = take(j, need)
                exhausted[j] = got < need  # ran dry: caps only tighten, so it stays dry
                moved_in[j] += got
                need -= got
    indices = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    return GaussianPick(indices=indices, moved_in=moved_in, skipped_cap=skipped)


def select_gaussian(
    records: Sequence[dict] | Columns,
    n: int,
    *,
    mu: float = 2.5,
    sigma: float = 0.25,
    ppl_min: float = 1.0,
    ppl_max: float = 5.0,
    bin_width: float = 0.05,
    max_per_query: int = 1,
    seed: int = 0,
    redistribute: bool = False,
    verified_only: bool = True,
    ppl_field: str = "ppl",
    group_field: str = "query",
    length_field: str = "n_tokens",
    response_field: str = "response",
    correct_field: str = "correct",
    source: str = "records",
) -> Selection:
    """Algorithm 1 (Gaussian-guided PPL sampling) with a global per-query cap; see the module docstring.

    Bins are walked low to high, each longest response first (``length_field``, else the response's
    characters; ties in a seeded random order); a record whose query is at ``max_per_query`` is passed
    over. ``redistribute`` then moves shortfalls to the nearest bins with supply (:func:`gaussian_pick`).
    """
    check_sizes(n, max_per_query)
    binning = Binning(ppl_min, ppl_max, bin_width)
    targets = gaussian_targets(n, binning, mu=mu, sigma=sigma)
    cols = as_columns(records, ppl_field=ppl_field, group_field=group_field, correct_field=correct_field,
                      length_field=length_field, response_field=response_field, source=source)
    bins = binning.index(cols.ppl)
    pool = eligible_pool(cols, want_correct=True if verified_only else None, ppl_ok=bins >= 0,
                         range_label="out_of_range")
    bins = np.where(pool.eligible, bins, -1)
    pick = gaussian_pick(bins, cols.length, cols.group, targets, max_per_query=max_per_query, seed=seed,
                         redistribute=redistribute)
    params = dict(n=n, mu=mu, sigma=sigma, ppl_min=ppl_min, ppl_max=ppl_max, bin_width=bin_width,
                  max_per_query=max_per_query, seed=seed, redistribute=redistribute, verified_only=verified_only)
    sel = finish("gaussian", records, pool, pick.indices, pick.skipped_cap, binning, params,
                 target=targets, moved_in=pick.moved_in if redistribute else None)
    sel.stats.update(short_bins=len(sel.short_bins), shortfall=n - len(sel.indices),
                     redistributed=int(pick.moved_in.sum()))
    return sel
