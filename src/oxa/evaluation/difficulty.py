"""Difficulty buckets from a reference model's pass counts (the paper's Figure 2d).

A problem's difficulty is how many of the reference model's n samples solved it. Buckets grow by
powers of four - 0, 1-4, 5-16, 17-64, 65..n-1, n - so for n = 128 they match the ranges the paper
discusses ("particularly in the range of 5 to 16"). A run's gain in a bucket is its pass@1 minus the
reference's pass@1 over the same problems.
"""

from __future__ import annotations


def bucket_edges(n: int) -> list[tuple[int, int]]:
    """Inclusive (low, high) pass-count ranges for a reference with ``n`` samples per problem."""
    edges = [(0, 0)]
    low, high = 1, 4
    while low <= n - 1:
        edges.append((low, min(high, n - 1)))
        low, high = high + 1, high * 4
    return edges + [(n, n)] if n > 0 else edges


def bucket_label(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def bucket_gains(problems: list[dict], reference: list[dict]) -> list[dict]:
    """Per bucket of the reference's pass counts: problem count, reference and run pass@1, gain.

    Both lists hold per-problem ``{"id", "n", "correct"}`` entries (as in ``results.json``); problems
    are matched by id, and the reference must use one n for all problems.
    """
    ref = {str(p["id"]): p for p in reference}
    ref_ns = {p["n"] for p in reference}
    if len(ref_ns) != 1:
        raise ValueError(f"the reference has differing samples per problem: {sorted(ref_ns)}")
    (n_ref,) = ref_ns
    rows = []
    for low, high in bucket_edges(n_ref):
        pairs = [(p, ref[str(p["id"])]) for p in problems
                 if str(p["id"]) in ref and low <= ref[str(p["id"])]["correct"] <= high]
        if not pairs:
            rows.append({"bucket": bucket_label(low, high), "problems": 0, "reference_pass@1": None,
                         "pass@1": None, "gain": None})
            continue
        ours = sum(p["correct"] / p["n"] for p, _ in pairs) / len(pairs)
        theirs = sum(r["correct"] / r["n"] for _, r in pairs) / len(pairs)
        rows.append({"bucket": bucket_label(low, high), "problems": len(pairs), "reference_pass@1": theirs,
                     "pass@1": ours, "gain": ours - theirs})
    return rows
