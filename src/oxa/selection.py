"""Choosing training subsets by perplexity: Gaussian-guided sampling (Algorithm 1) and its baselines.

Every method reads the same four columns from the records - PPL, the group key (one query), the
response length and the verifier's ``correct`` flag - and reduces to one rule: walk the candidates in
a method-specific order and keep each one unless its query already has ``max_per_query`` selections,
until ``n`` are kept. The walk is vectorised: the k-th appearance of a query in the order is kept iff
k < cap, which is what the per-record loop of the reference code decides one record at a time.

- ``gaussian`` (OXA_MLE): PPL bins of width ``w`` over ``[ppl_min, ppl_max]``; bin i gets
  ``T_i = floor(N p_i)`` (+1 for the largest remainders) with ``p_i`` the normal density at the bin
  centre normalised over the bins; bins are walked low to high PPL, longest responses first, and the
  per-query count is global across bins, exactly as Algorithm 1.
- ``lowest`` (SFT_LP), ``highest``, ``random`` (SFT), ``interval`` (PPL in [a, b], random order).
- ``errors`` (the UL set of OXA_Full): the lowest-PPL *incorrect* samples with PPL >= ``min_ppl``.

The CE methods keep only records the verifier marked ``correct == True`` when that field exists;
``errors`` keeps only ``correct == False``. Records without a finite PPL are dropped and counted.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oxa.config import StageConfig
from oxa.errors import OxaError, RecordError
from oxa.records import Fields

Method = Literal["gaussian", "lowest", "highest", "random", "interval", "errors"]

EDGE_TOLERANCE = 1e-9
"""In units of bins: a PPL within this of a bin's lower edge belongs to that bin (2.5 at width 0.05
is bin 30 even though (2.5 - 1.0) / 0.05 may round below 30); the reference code adds the same 1e-9."""


# ---------------------------------------------------------------------------------------------------
# Columns


@dataclass
class Columns:
    """The per-record values selection needs, as arrays aligned with the input records."""

    ppl: np.ndarray  # float64, NaN where missing / null / NaN / inf
    group: np.ndarray  # int64 code of the group key (the query)
    correct: np.ndarray | None  # int8: 1 correct, 0 incorrect, -1 not verified; None when no record has the field
    length: np.ndarray | None = None  # float64 response length (tokens when known), for ``gaussian``


def _where(source: str, i: int) -> str:
    return f"{source}: record {i + 1}"


def _check_types(values: list, allowed: tuple[type, ...], name: str, source: str, what: str) -> None:
    """Raise on the first value whose type is not allowed (bool is never a number)."""
    if set(map(type, values)) <= set(allowed):
        return
    for i, v in enumerate(values):
        if type(v) not in allowed:
            raise RecordError(f"{_where(source, i)}: field {name!r} must be {what}, got {type(v).__name__} {v!r:.60}")


def _factorize(keys: list, records: Sequence[dict], name: str, source: str) -> np.ndarray:
    """Integer codes for the group keys (equal keys, equal codes): Arrow's C++ hashing when the column
    has one plain type and no nulls, else a Python dict that also finds the offending record."""
    import pyarrow as pa

    try:
        arr = pa.array(keys)
        if arr.null_count == 0 and not pa.types.is_nested(arr.type):
            return arr.dictionary_encode().indices.to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass  # mixed types (e.g. ints and strings) are hashed below
    codes: dict[Any, int] = {}
    group = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        try:
            if key is None:
                raise TypeError
            group[i] = codes.setdefault(key, len(codes))
        except TypeError:
            have = ", ".join(sorted(map(str, records[i]))) or "none"
            state = "is missing or null" if key is None else f"must be text or a number, got {type(key).__name__}"
            raise RecordError(f"{_where(source, i)}: group field {name!r} {state} (fields present: {have}); "
                              "name the field that identifies the query with --query-field or --group-field") from None
    return group


def extract_columns(
    records: Sequence[dict],
    *,
    ppl_field: str = "ppl",
    group_field: str = "query",
    correct_field: str = "correct",
    length_field: str | None = None,
    response_field: str = "response",
    source: str = "records",
) -> Columns:
    """Pull the selection columns out of ``records``; a wrong type is an error naming record and field.

    A missing, null, NaN or infinite PPL becomes NaN (dropped and counted later), but a PPL field absent
    from every record is an error: the input was most likely not scored. With ``length_field`` the length
    is that field where present, else the length of the response text in characters.
    """
    n = len(records)
    raw = [r.get(ppl_field) for r in records]
    _check_types(raw, (float, int, type(None)), ppl_field, source, "a number or null")
    if n and all(v is None for v in raw) and not any(ppl_field in r for r in records):
        have = ", ".join(sorted(map(str, records[0]))) or "none"
        raise RecordError(
            f"{source}: no record has the PPL field {ppl_field!r} (fields present: {have}); "
            "score the data first (oxa score) or name the field with --ppl-field"
        )
    ppl = np.array(raw, dtype=np.float64).reshape(n)  # None -> NaN
    ppl[~np.isfinite(ppl)] = np.nan

    group = _factorize([r.get(group_field) for r in records], records, group_field, source)

    correct = None
    flags = [r.get(correct_field) for r in records]
    if any(f is not None for f in flags):
        _check_types(flags, (bool, type(None)), correct_field, source, "true, false or null")
        correct = np.array([-1 if f is None else int(f) for f in flags], dtype=np.int8)

    length = None
    if length_field is not None:
        lengths = [r.get(length_field) for r in records]
        _check_types(lengths, (int, float, type(None)), length_field, source, "a number or null")
        length = np.array(lengths, dtype=np.float64).reshape(n)  # None -> NaN: use the text's length instead
        for i in np.flatnonzero(~np.isfinite(length)):
            text = records[i].get(response_field)
            if not isinstance(text, str):
                raise RecordError(
                    f"{_where(source, i)}: neither a length field {length_field!r} nor a text response field "
                    f"{response_field!r}; the gaussian method ranks responses by length"
                )
            length[i] = len(text)
    return Columns(ppl=ppl, group=group, correct=correct, length=length)


# ---------------------------------------------------------------------------------------------------
# Bins and the Gaussian target


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


# ---------------------------------------------------------------------------------------------------
# The capped walk


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


# ---------------------------------------------------------------------------------------------------
# Public API


@dataclass
class Selection:
    """A chosen subset with the accounting that explains it.

    ``records`` are the chosen input records (unchanged, in input order); ``indices`` their input
    positions. ``stats`` counts the pool, every reason a record was not chosen and the outcome.
    ``edges``/``pool_hist``/``selected_hist`` (and for ``gaussian`` ``target``/``moved_in``) are the
    PPL histograms over the method's bins.
    """

    method: str
    records: list[dict]
    indices: np.ndarray
    stats: dict[str, int]
    params: dict[str, Any]
    edges: np.ndarray
    pool_hist: np.ndarray
    selected_hist: np.ndarray
    target: np.ndarray | None = None
    moved_in: np.ndarray | None = None
    pool_ppl: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    selected_ppl: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def short_bins(self) -> list[int]:
        """Bins whose selection fell short of the target (``gaussian`` only)."""
        if self.target is None:
            return []
        return [int(b) for b in np.flatnonzero(self.selected_hist < self.target)]

    def histogram(self) -> dict[str, Any]:
        """JSON-ready report: method, settings, counts and one row per bin."""
        rows = []
        for b in range(len(self.pool_hist)):
            row = {"lo": round(float(self.edges[b]), 10), "hi": round(float(self.edges[b + 1]), 10),
                   "pool": int(self.pool_hist[b]), "selected": int(self.selected_hist[b])}
            if self.target is not None:
                row["target"] = int(self.target[b])
            if self.moved_in is not None:
                row["redistributed_in"] = int(self.moved_in[b])
            rows.append(row)
        return {"method": self.method, "params": self.params, "stats": self.stats, "bins": rows}


@dataclass
class _Pool:
    """Records that survive the verifier and PPL filters, and the counts of those that did not."""

    columns: Columns
    eligible: np.ndarray  # bool mask
    stats: dict[str, int]


def _pool(columns: Columns, *, want_correct: bool | None, ppl_ok: np.ndarray | None, range_label: str) -> _Pool:
    n = len(columns.ppl)
    eligible = np.ones(n, dtype=bool)
    stats = {"pool": n}
    if want_correct is not None:
        key = "not_correct" if want_correct else "not_incorrect"
        if columns.correct is None:
            if not want_correct:
                raise OxaError("error mining needs verified records, but no record has a 'correct' field; "
                               "run oxa verify first (or name the field with --correct-field)")
            stats["no_verdicts"] = n  # nothing to filter on: the caller is told the data is unverified
        else:
            keep = columns.correct == (1 if want_correct else 0)
            stats[key] = int((eligible & ~keep).sum())
            eligible &= keep
    finite = ~np.isnan(columns.ppl)
    stats["no_ppl"] = int((eligible & ~finite).sum())
    eligible &= finite
    if ppl_ok is not None:
        stats[range_label] = int((eligible & ~ppl_ok).sum())
        eligible &= ppl_ok
    stats["eligible"] = int(eligible.sum())
    return _Pool(columns, eligible, stats)


def _check(n: int, max_per_query: int) -> None:
    if n < 0:
        raise OxaError(f"n must be >= 0, got {n}")
    if max_per_query < 1:
        raise OxaError(f"max_per_query must be >= 1, got {max_per_query}")


def display_binning(ppl: np.ndarray, width: float) -> Binning:
    """Bins for showing a non-Gaussian selection: the pool's PPL range (to its 99.9th percentile), <= 200 bins."""
    if len(ppl) == 0:
        return Binning(1.0, 5.0, width)
    lo = math.floor(float(ppl.min()) / width) * width
    hi = max(lo + width, math.ceil(float(np.quantile(ppl, 0.999)) / width) * width)
    width = max(width, (hi - lo) / 200)
    return Binning(lo, hi, width)


def _as_columns(records: Sequence[dict] | Columns, *, length_field: str | None = None, **fields: str) -> Columns:
    """Columns of in-memory records, or the given :class:`Columns` (then ``Selection.records`` stays empty
    and the caller fetches the rows at ``Selection.indices``, as :func:`select_file` does)."""
    if not isinstance(records, Columns):
        return extract_columns(records, length_field=length_field, **fields)
    if length_field is not None and records.length is None:
        raise OxaError("the gaussian method needs response lengths, but the columns have none")
    return records


def _finish(method: str, records: Sequence[dict] | Columns, pool: _Pool, picked: np.ndarray, skipped_cap: int,
            binning: Binning, params: dict[str, Any], **extra: Any) -> Selection:
    ppl = pool.columns.ppl
    indices = np.sort(picked)
    pool_ppl = ppl[pool.eligible]
    stats = {**pool.stats, "skipped_query_cap": skipped_cap, "selected": len(indices)}
    return Selection(
        method=method, records=[] if isinstance(records, Columns) else [records[i] for i in indices],
        indices=indices, stats=stats, params=params,
        edges=binning.edges, pool_hist=binning.counts(pool_ppl), selected_hist=binning.counts(ppl[indices]),
        pool_ppl=pool_ppl, selected_ppl=ppl[indices], **extra,
    )


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
    _check(n, max_per_query)
    binning = Binning(ppl_min, ppl_max, bin_width)
    targets = gaussian_targets(n, binning, mu=mu, sigma=sigma)
    cols = _as_columns(records, ppl_field=ppl_field, group_field=group_field, correct_field=correct_field,
                       length_field=length_field, response_field=response_field, source=source)
    bins = binning.index(cols.ppl)
    pool = _pool(cols, want_correct=True if verified_only else None, ppl_ok=bins >= 0, range_label="out_of_range")
    bins = np.where(pool.eligible, bins, -1)
    pick = gaussian_pick(bins, cols.length, cols.group, targets, max_per_query=max_per_query, seed=seed,
                         redistribute=redistribute)
    params = dict(n=n, mu=mu, sigma=sigma, ppl_min=ppl_min, ppl_max=ppl_max, bin_width=bin_width,
                  max_per_query=max_per_query, seed=seed, redistribute=redistribute, verified_only=verified_only)
    sel = _finish("gaussian", records, pool, pick.indices, pick.skipped_cap, binning, params,
                  target=targets, moved_in=pick.moved_in if redistribute else None)
    sel.stats.update(short_bins=len(sel.short_bins), shortfall=n - len(sel.indices),
                     redistributed=int(pick.moved_in.sum()))
    return sel


def _select_ordered(
    method: str,
    records: Sequence[dict] | Columns,
    n: int,
    *,
    key: Callable[[np.ndarray], np.ndarray] | None,
    want_correct: bool | None,
    ppl_ok: Callable[[np.ndarray], np.ndarray] | None = None,
    range_label: str = "out_of_range",
    max_per_query: int,
    seed: int,
    ppl_field: str,
    group_field: str,
    correct_field: str,
    bin_width: float,
    source: str,
    params: dict[str, Any],
) -> Selection:
    """Shared body of the non-binned methods: filter, order by ``key(ppl)`` (seeded random ties, or a
    seeded shuffle when ``key`` is None), then the capped walk."""
    _check(n, max_per_query)
    cols = _as_columns(records, ppl_field=ppl_field, group_field=group_field, correct_field=correct_field,
                       source=source)
    pool = _pool(cols, want_correct=want_correct, ppl_ok=None if ppl_ok is None else ppl_ok(cols.ppl),
                 range_label=range_label)
    eligible = np.flatnonzero(pool.eligible)
    order = eligible[seeded_order(len(eligible), seed, None if key is None else key(cols.ppl[eligible]))]
    picked, skipped = take_capped(order, cols.group, max_per_query, n)
    params = dict(n=n, **params, max_per_query=max_per_query, seed=seed)
    return _finish(method, records, pool, picked, skipped, display_binning(cols.ppl[eligible], bin_width), params)


def select_lowest(records: Sequence[dict] | Columns, n: int, *, max_per_query: int = 1, seed: int = 0,
                  verified_only: bool = True, ppl_field: str = "ppl", group_field: str = "query",
                  correct_field: str = "correct", bin_width: float = 0.05, source: str = "records") -> Selection:
    """SFT_LP: the ``n`` lowest-PPL verified records, at most ``max_per_query`` per query (seeded ties)."""
    return _select_ordered("lowest", records, n, key=lambda p: p, want_correct=True if verified_only else None,
                           max_per_query=max_per_query, seed=seed, ppl_field=ppl_field, group_field=group_field,
                           correct_field=correct_field, bin_width=bin_width, source=source,
                           params=dict(verified_only=verified_only))


def select_highest(records: Sequence[dict] | Columns, n: int, *, max_per_query: int = 1, seed: int = 0,
                   verified_only: bool = True, ppl_field: str = "ppl", group_field: str = "query",
                   correct_field: str = "correct", bin_width: float = 0.05, source: str = "records") -> Selection:
    """The ``n`` highest-PPL verified records (an ablation), at most ``max_per_query`` per query."""
    return _select_ordered("highest", records, n, key=lambda p: -p, want_correct=True if verified_only else None,
                           max_per_query=max_per_query, seed=seed, ppl_field=ppl_field, group_field=group_field,
                           correct_field=correct_field, bin_width=bin_width, source=source,
                           params=dict(verified_only=verified_only))


def select_random(records: Sequence[dict] | Columns, n: int, *, max_per_query: int = 1, seed: int = 0,
                  verified_only: bool = True, ppl_field: str = "ppl", group_field: str = "query",
                  correct_field: str = "correct", bin_width: float = 0.05, source: str = "records") -> Selection:
    """SFT: ``n`` verified records drawn uniformly at random, at most ``max_per_query`` per query.

    Records without a finite PPL are dropped like everywhere else, so every method draws from one pool.
    """
    return _select_ordered("random", records, n, key=None, want_correct=True if verified_only else None,
                           max_per_query=max_per_query, seed=seed, ppl_field=ppl_field, group_field=group_field,
                           correct_field=correct_field, bin_width=bin_width, source=source,
                           params=dict(verified_only=verified_only))


def select_interval(records: Sequence[dict] | Columns, n: int, *, ppl_min: float, ppl_max: float, max_per_query: int = 1,
                    seed: int = 0, verified_only: bool = True, ppl_field: str = "ppl", group_field: str = "query",
                    correct_field: str = "correct", bin_width: float = 0.05, source: str = "records") -> Selection:
    """Interval sampling (the paper's PPL-range ablation): random records with ppl_min <= PPL <= ppl_max."""
    if not ppl_max >= ppl_min:
        raise OxaError(f"interval needs ppl_min <= ppl_max, got [{ppl_min}, {ppl_max}]")
    return _select_ordered("interval", records, n, key=None, want_correct=True if verified_only else None,
                           ppl_ok=lambda p: (p >= ppl_min) & (p <= ppl_max), max_per_query=max_per_query,
                           seed=seed, ppl_field=ppl_field, group_field=group_field, correct_field=correct_field,
                           bin_width=bin_width, source=source,
                           params=dict(ppl_min=ppl_min, ppl_max=ppl_max, verified_only=verified_only))


def select_errors(records: Sequence[dict] | Columns, n: int, *, min_ppl: float = 1.2, max_ppl: float | None = None,
                  max_per_query: int = 1, seed: int = 0, ppl_field: str = "ppl", group_field: str = "query",
                  correct_field: str = "correct", bin_width: float = 0.05, source: str = "records") -> Selection:
    """Error mining (the UL set): the lowest-PPL records with ``correct == False`` and PPL >= ``min_ppl``.

    These are the model's high-confidence errors. The floor drops degenerate, repetitive samples the
    model finds trivially likely; ``max_ppl`` optionally bounds the other side. Equivalent to the
    reference's "each query's lowest ``max_per_query``, then the global lowest ``n``".
    """
    hi = math.inf if max_ppl is None else max_ppl
    return _select_ordered("errors", records, n, key=lambda p: p, want_correct=False,
                           ppl_ok=lambda p: (p >= min_ppl) & (p <= hi), range_label="outside_ppl_bounds",
                           max_per_query=max_per_query, seed=seed, ppl_field=ppl_field, group_field=group_field,
                           correct_field=correct_field, bin_width=bin_width, source=source,
                           params=dict(min_ppl=min_ppl, max_ppl=max_ppl))


# ---------------------------------------------------------------------------------------------------
# The `oxa select` stage


class SelectConfig(StageConfig):
    """Settings of ``oxa select`` (every field is also a flag, and a key of a ``--config`` YAML file)."""

    input: Path
    output: Path
    method: Method = "gaussian"
    n: int
    mu: float = 2.5
    sigma: float = 0.25
    ppl_min: float = 1.0
    ppl_max: float = 5.0
    bin_width: float = 0.05
    max_per_query: int = 1
    seed: int = 0
    redistribute: bool = False
    min_ppl: float = 1.2
    keep_unverified: bool = False
    ppl_field: str = "ppl"
    group_field: str | None = None
    length_field: str = "n_tokens"
    correct_field: str = "correct"
    fields: Fields = Fields()
    skip_bad: bool = False


def side_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """Where the histogram report goes: ``<OUT stem>.hist.json`` and ``<OUT stem>.hist.png`` beside OUT."""
    base = Path(output).with_suffix("")
    return base.with_name(base.name + ".hist.json"), base.with_name(base.name + ".hist.png")


def run_selection(records: Sequence[dict] | Columns, config: SelectConfig, *, source: str = "records") -> Selection:
    """Dispatch ``config.method`` on in-memory records (or on columns read by :func:`read_columns`)."""
    c = config
    common: dict[str, Any] = dict(max_per_query=c.max_per_query, seed=c.seed, ppl_field=c.ppl_field,
                                  group_field=c.group_field or c.fields.query, correct_field=c.correct_field,
                                  bin_width=c.bin_width, source=source)
    if c.method == "errors":
        return select_errors(records, c.n, min_ppl=c.min_ppl, **common)
    common["verified_only"] = not c.keep_unverified
    if c.method == "gaussian":
        return select_gaussian(records, c.n, mu=c.mu, sigma=c.sigma, ppl_min=c.ppl_min, ppl_max=c.ppl_max,
                               redistribute=c.redistribute, length_field=c.length_field,
                               response_field=c.fields.response, **common)
    if c.method == "interval":
        return select_interval(records, c.n, ppl_min=c.ppl_min, ppl_max=c.ppl_max, **common)
    return {"lowest": select_lowest, "highest": select_highest, "random": select_random}[c.method](records, c.n, **common)


def select_file(config: SelectConfig) -> tuple[Selection, dict[str, int]]:
    """What ``oxa select`` runs: read, select, write OUT and the histogram JSON + PNG (all atomically).

    A regular JSONL or Parquet file is read column-wise by Arrow and only the selected rows are parsed
    into records (:func:`read_columns`, :func:`read_rows`); anything else goes through
    :func:`oxa.io.read_records`, which names the bad line or skips it with ``skip_bad``. Both paths
    select the same records. Returns the selection and the read statistics.
    """
    from oxa.io import ReadStats, read_records, write_json, write_records
    from oxa.plots import plot_ppl_histograms

    c, source = config, str(config.input)
    if c.output.resolve() == c.input.resolve():
        raise OxaError(f"{c.output}: the output would overwrite the input; choose another path")
    read_stats = ReadStats()
    columns = read_columns(c.input, ppl_field=c.ppl_field, group_field=c.group_field or c.fields.query,
                           correct_field=c.correct_field, length_field=c.length_field if c.method == "gaussian" else None)
    rows = None if columns is None else read_rows(c.input, columns)
    if rows is None:
        records = read_records(c.input, skip_bad=c.skip_bad, stats=read_stats)
        sel = run_selection(records, c, source=source)
    else:
        sel = run_selection(columns, c, source=source)
        sel.records = rows(sel.indices)
        read_stats.read = len(columns.ppl)
    write_records(c.output, sel.records)
    hist_json, hist_png = side_paths(c.output)
    report = sel.histogram()
    report.update(input=source, output=str(c.output), skipped_lines=read_stats.skipped)
    write_json(hist_json, report)
    plot_ppl_histograms(
        {"pool (eligible)": sel.pool_ppl, "selected": sel.selected_ppl}, hist_png, target=sel.target,
        bin_edges=sel.edges, title=f"oxa select --method {sel.method}: {len(sel.indices):,} of {sel.stats['pool']:,}",
    )
    return sel, {"read": read_stats.read, "skipped": read_stats.skipped}


# ---------------------------------------------------------------------------------------------------
# Reading millions of records: columns by Arrow, full records only for the selected rows


def _first_record(path: Path) -> dict | None:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None


def _arrow_type(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, str):
        return pa.string()
    if isinstance(value, int) and not isinstance(value, bool):
        return pa.int64()
    return None


def read_columns(
    path: str | os.PathLike,
    *,
    ppl_field: str = "ppl",
    group_field: str = "query",
    correct_field: str = "correct",
    length_field: str | None = None,
) -> Columns | None:
    """The selection columns of a JSONL or Parquet file, parsed by Arrow in C++ without a dict per record.

    Returns None when the file is not that regular - a JSON array, a malformed line, a field whose type
    changes between records, a missing group key or length, or no PPL at all: the record-by-record
    reader then handles it and its error names the line and field. Equal results either way.
    """
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    path = Path(path)
    name = path.name.lower()
    wanted = [ppl_field, group_field, correct_field] + ([length_field] if length_field else [])
    try:
        if name.endswith(".parquet"):
            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[f for f in dict.fromkeys(wanted) if f in present])
        elif name.endswith((".jsonl", ".ndjson")):
            first = _first_record(path)
            group_type = _arrow_type(first.get(group_field)) if first else None
            if group_type is None:
                return None
            types = {ppl_field: pa.float64(), group_field: group_type, correct_field: pa.bool_()}
            if length_field:
                types[length_field] = pa.float64()
            schema = pa.schema(list(types.items()))
            options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            table = pj.read_json(path, parse_options=options)
        else:
            return None
    except (pa.ArrowException, OSError, ValueError):
        return None
    if ppl_field not in table.column_names or group_field not in table.column_names:
        return None
    ppl_col, group_col = table[ppl_field], table[group_field]
    if not pa.types.is_floating(ppl_col.type) and not pa.types.is_integer(ppl_col.type):
        return None
    if ppl_col.null_count == len(ppl_col) or group_col.null_count or pa.types.is_nested(group_col.type):
        return None
    ppl = ppl_col.cast(pa.float64()).fill_null(math.nan).to_numpy()
    ppl = np.where(np.isfinite(ppl), ppl, np.nan)
    group = group_col.combine_chunks().dictionary_encode().indices.to_numpy().astype(np.int64)
    correct = None
    if correct_field in table.column_names and table[correct_field].null_count < len(table):
        col = table[correct_field]
        if not pa.types.is_boolean(col.type):
            return None
        correct = np.where(col.is_valid().to_numpy(zero_copy_only=False),
                           col.fill_null(False).to_numpy(zero_copy_only=False), -1).astype(np.int8)
    length = None
    if length_field:
        if length_field not in table.column_names or table[length_field].null_count:
            return None  # the record reader falls back to the response text's length
        length = table[length_field].cast(pa.float64()).to_numpy()
    return Columns(ppl=ppl, group=group, correct=correct, length=length)


def read_rows(path: str | os.PathLike, columns: Columns) -> Callable[[np.ndarray], list[dict]] | None:
    """A function returning the full records at given (sorted) positions of the file ``columns`` came from.

    Parquet is streamed batch by batch, keeping the requested rows. For JSONL the non-blank lines are
    indexed first and their count checked against the columns (None if it differs, and the caller reads
    every record instead); only the requested lines are parsed, so a 50k selection out of millions
    costs one pass over the bytes.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    n = len(columns.ppl)
    if path.name.lower().endswith(".parquet"):

        def parquet_rows(indices: np.ndarray) -> list[dict]:
            out, start = [], 0  # batch by batch, so only one batch of full rows is in memory at a time
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                lo, hi = np.searchsorted(indices, [start, start + batch.num_rows])
                if hi > lo:
                    out += batch.take(indices[lo:hi] - start).to_pylist()
                start += batch.num_rows
            return out

        return parquet_rows
    offsets = np.empty(n, dtype=np.int64)
    count = 0
    with open(path, "rb") as f:
        pos = 0
        for line in f:
            if line.strip():
                if count == n:
                    return None
                offsets[count] = pos
                count += 1
            pos += len(line)
    if count != n:
        return None

    def rows(indices: np.ndarray) -> list[dict]:
        out = []
        with open(path, "rb") as f:
            for i in indices:
                f.seek(int(offsets[i]))
                out.append(json.loads(f.readline()))
        return out

    return rows
