"""Is method A better than method B? A paired, two-level bootstrap over seeds and problems.

A comparison has per-problem values of both methods (a problem's Pass@1 = c/n, its Pass@k, its mean
policy entropy) for each seed, on the same problems. Its statistic is the mean over seeds of a weighted
sum of per-problem means of A - B, one term per stratum (a benchmark, weighted 1/benchmarks, as in
the paper's "Avg." column). Its uncertainty comes from both sources of chance the study has:

* seeds (world, selections, training, sampling): resampled with replacement;
* problems: within each resampled seed and stratum, resampled with replacement, A and B together
  (paired: a hard problem is hard for both, and only their difference varies).

The verdict reads the percentile interval: ``holds`` when it lies above zero, ``does not hold`` when it
lies below, ``undecided`` otherwise. ``p_not_better`` is the share of replicates at or below zero.
With one seed only problems are resampled, and the interval says nothing about seed-to-seed spread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from oxa.errors import OxaError
from oxa.evaluation.passk import pass_at_k

Table = dict[str, dict[str, float]]
"""Per-problem values of one run: benchmark -> problem id -> value."""

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"


@dataclass(frozen=True)
class Comparison:
    """The answer to "A beats B on ``metric``"."""

    a: str
    b: str
    metric: str
    diff: float  # observed statistic (A - B)
    low: float  # percentile confidence interval of the statistic
    high: float
    p_not_better: float  # share of bootstrap replicates <= 0
    seeds: int
    problems: int  # paired problems, summed over seeds
    confidence: float

    @property
    def verdict(self) -> str:
        return HOLDS if self.low > 0 else FAILS if self.high < 0 else UNDECIDED


Strata = list[tuple[float, np.ndarray]]
"""One seed's per-problem values as (weight, values) strata; its statistic is sum(weight * mean(values))."""


def statistic(seeds: Sequence[Strata]) -> float:
    """Mean over seeds of each seed's weighted sum of stratum means."""
    return float(np.mean([sum(w * x.mean() for w, x in strata) for strata in seeds]))


def bootstrap_replicates(seeds: Sequence[Strata], *, iterations: int = 10000, seed: int = 0) -> np.ndarray:
    """``iterations`` replicates of :func:`statistic`: draw as many seeds as there are, with replacement,
    and within each drawn seed redraw every stratum's values with replacement."""
    if not seeds or any(not strata or any(len(x) == 0 for _, x in strata) for strata in seeds):
        raise OxaError("bootstrap: every seed needs at least one problem in every stratum")
    rng = np.random.default_rng(seed)
    n_seeds = len(seeds)
    drawn = rng.integers(0, n_seeds, size=(iterations, n_seeds))  # which seed fills each slot
    per_seed = np.empty((n_seeds, iterations, n_seeds))  # value of seed s were it drawn into (replicate, slot)
    for s, strata in enumerate(seeds):
        total = np.zeros((iterations, n_seeds))
        for w, x in strata:
            total += w * x[rng.integers(0, len(x), size=(iterations, n_seeds, len(x)))].mean(-1)
        per_seed[s] = total
    slots = np.take_along_axis(per_seed.transpose(1, 2, 0), drawn[..., None], axis=2)[..., 0]
    return slots.mean(axis=1)


def compare_strata(a: str, b: str, metric: str, seeds: Sequence[Strata], *, iterations: int = 10000,
                   confidence: float = 0.95, seed: int = 0) -> Comparison:
    """A :class:`Comparison` from per-seed strata of per-problem differences A - B."""
    reps = bootstrap_replicates(seeds, iterations=iterations, seed=seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return Comparison(a, b, metric, statistic(seeds), float(low), float(high), float(np.mean(reps <= 0)),
                      len(seeds), sum(len(x) for strata in seeds for _, x in strata), confidence)


def paired_strata(a: Table, b: Table) -> Strata:
    """Per-benchmark differences A - B over the problems both have, each benchmark weighted equally."""
    shared = [bench for bench in a if bench in b and set(a[bench]) & set(b[bench])]
    if not shared:
        raise OxaError("the runs compared share no problem (are they evaluated on the same benchmarks?)")
    out = []
    for bench in shared:
        ids = sorted(set(a[bench]) & set(b[bench]))
        out.append((1 / len(shared), np.array([a[bench][i] - b[bench][i] for i in ids], dtype=float)))
    return out


def compare(a_name: str, a: Sequence[Table], b_name: str, b: Sequence[Table], metric: str, **kwargs) -> Comparison:
    """"A beats B on ``metric``" from per-seed tables of both (paired by position: seed i with seed i)."""
    if len(a) != len(b):
        raise OxaError(f"{a_name} has {len(a)} seeds, {b_name} {len(b)}: pair them seed by seed")
    return compare_strata(a_name, b_name, metric, [paired_strata(x, y) for x, y in zip(a, b)], **kwargs)


# ------------------------------------------------------------------------------ per-problem tables
def metric_table(results: dict, metric: str) -> Table:
    """Per-problem ``pass@1`` (c / n) or ``pass@k`` (k = n, the paper's) of an ``oxa eval`` results.json."""
    out: Table = {}
    for bench, m in results["benchmarks"].items():
        rows = m.get("per_problem")
        if not rows:
            raise OxaError(f"results of {results.get('model')!r}: benchmark {bench} has no per-problem counts")
        if metric == "pass@1":
            out[bench] = {str(p["id"]): p["correct"] / p["n"] for p in rows}
        elif metric == "pass@k":
            out[bench] = {str(p["id"]): pass_at_k(p["n"], p["correct"], p["n"]) for p in rows}
        else:
            raise OxaError(f"unknown metric {metric!r}; per-problem metrics are pass@1 and pass@k")
    return out


def entropy_table(samples: Iterable[dict]) -> Table:
    """Per-problem policy entropy from ``oxa eval``'s samples.jsonl: the token mean over the problem's
    samples (each sample's ``entropy`` weighted by its ``n_tokens``)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        if s.get("entropy") is None or not s.get("n_tokens"):
            continue
        acc = sums.setdefault(str(s["benchmark"]), {}).setdefault(str(s["query_id"]), [0.0, 0.0])
        acc[0] += s["entropy"] * s["n_tokens"]
        acc[1] += s["n_tokens"]
    return {b: {q: h / t for q, (h, t) in probs.items()} for b, probs in sums.items()}


def difference_table(after: Table, before: Table) -> Table:
    """after - before per shared problem (e.g. what RL added to each problem's Pass@1)."""
    return {b: {q: after[b][q] - before[b][q] for q in after[b] if q in before[b]} for b in after if b in before}


def contrast_strata(a: Table, b: Table, base_counts: Table, n: int) -> Strata | None:
    """Claim 4's contrast: the mean of A - B over problems the base model solves sometimes (0 < c < n of
    its samples) minus that over the rest (never or always), problems of all benchmarks pooled; None when
    either group is empty (nothing to contrast)."""
    sometimes, rest = [], []
    for bench, probs in a.items():
        for q, value in probs.items():
            if q in b.get(bench, {}) and q in base_counts.get(bench, {}):
                (sometimes if 0 < base_counts[bench][q] < n else rest).append(value - b[bench][q])
    if not sometimes or not rest:
        return None
    return [(1.0, np.array(sometimes)), (-1.0, np.array(rest))]


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (spread 0 for one seed)."""
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
