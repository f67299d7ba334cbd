"""The baselines and the UL set: ``lowest`` (SFT_LP), ``highest``, ``random`` (SFT), ``interval`` (PPL in
[a, b], random order) and ``errors`` (the lowest-PPL *incorrect* samples with PPL >= ``min_ppl``).

Each is one order over the eligible pool followed by the capped walk (:func:`take_capped`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from oxa.binning import display_binning
from oxa.errors import OxaError
from oxa.selection.columns import Columns
from oxa.selection.result import Selection, as_columns, check_sizes, eligible_pool, finish
from oxa.selection.walk import seeded_order, take_capped


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
    check_sizes(n, max_per_query)
    cols = as_columns(records, ppl_field=ppl_field, group_field=group_field, correct_field=correct_field,
                      source=source)
    pool = eligible_pool(cols, want_correct=want_correct, ppl_ok=None if ppl_ok is None else ppl_ok(cols.ppl),
                         range_label=range_label)
    eligible = np.flatnonzero(pool.eligible)
    order = eligible[seeded_order(len(eligible), seed, None if key is None else key(cols.ppl[eligible]))]
    picked, skipped = take_capped(order, cols.group, max_per_query, n)
    params = dict(n=n, **params, max_per_query=max_per_query, seed=seed)
    return finish(method, records, pool, picked, skipped, display_binning(cols.ppl[eligible], bin_width), params)


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
