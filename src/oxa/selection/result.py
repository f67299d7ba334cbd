"""What every selection method shares: the eligible pool (verdict and PPL filters, with the count of
each reason a record left it) and the :class:`Selection` it returns, with its PPL histograms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oxa.binning import Binning
from oxa.errors import OxaError
from oxa.selection.columns import Columns, extract_columns


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
class Pool:
    """Records that survive the verifier and PPL filters, and the counts of those that did not."""

    columns: Columns
    eligible: np.ndarray  # bool mask
    stats: dict[str, int]


def eligible_pool(columns: Columns, *, want_correct: bool | None, ppl_ok: np.ndarray | None,
                  range_label: str) -> Pool:
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
    return Pool(columns, eligible, stats)


def check_sizes(n: int, max_per_query: int) -> None:
    if n < 0:
        raise OxaError(f"n must be >= 0, got {n}")
    if max_per_query < 1:
        raise OxaError(f"max_per_query must be >= 1, got {max_per_query}")


def as_columns(records: Sequence[dict] | Columns, *, length_field: str | None = None, **fields: str) -> Columns:
    """Columns of in-memory records, or the given :class:`Columns` (then ``Selection.records`` stays empty
    and the caller fetches the rows at ``Selection.indices``, as :func:`select_file` does)."""
    if not isinstance(records, Columns):
        return extract_columns(records, length_field=length_field, **fields)
    if length_field is not None and records.length is None:
        raise OxaError("the gaussian method needs response lengths, but the columns have none")
    return records


def finish(method: str, records: Sequence[dict] | Columns, pool: Pool, picked: np.ndarray, skipped_cap: int,
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
