"""The capped walk every selection method reduces to: keep each candidate in a given order unless its
query already has its quota, until ``n`` are kept, vectorised (the k-th appearance of a query in the
order is kept iff k < cap, which is what the reference code's per-record loop decides one at a time)."""

from __future__ import annotations

import numpy as np


def occurrence_rank(keys: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same key (0 for a key's first appearance)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.arange(len(keys))
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]] if len(keys) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(starts, pos, 0)) if len(keys) else pos
    rank = np.empty_like(pos)
    rank[order] = pos - first
    return rank


def take_capped(order: np.ndarray, group: np.ndarray, room: np.ndarray | int, n: int) -> tuple[np.ndarray, int]:
    """Walk ``order`` and keep a record unless its group has no room left, until ``n`` are kept.

    ``room`` is how many more each group may take (an int for all, or an array indexed by group code).
    Returns the kept indices (in walk order) and how many were passed over for the cap before the walk
    stopped.
    """
    if n <= 0:
        return order[:0], 0
    g = group[order]
    ok = occurrence_rank(g) < (room if np.isscalar(room) else room[g])
    kept_pos = np.flatnonzero(ok)[:n]
    walked = kept_pos[-1] + 1 if len(kept_pos) == n else len(order)
    return order[kept_pos], int(walked - len(kept_pos))


def seeded_order(n: int, seed: int, key: np.ndarray | None = None) -> np.ndarray:
    """Indices sorted by ``key`` (all of them if None) with ties in a random order fixed by ``seed``:
    a seeded shuffle followed by a stable sort."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm if key is None else perm[np.argsort(key[perm], kind="stable")]
