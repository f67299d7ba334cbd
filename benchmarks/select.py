"""Benchmark: Gaussian-guided selection of 50,000 out of 2.6M scored records (the paper's AceReason scale).

Side by side in one run, after a warm-up, median of repeats:
  ours-core   oxa.selection.gaussian_pick on arrays (binning done, sort + vectorised capped walk)
  ours        oxa.selection.select_gaussian on a list of dicts (column extraction + core + histograms)
  naive       the reference script's per-record Python loop over a list of dicts (bin lists, per-bin
              sort by (length, random), dict counts), transcribed from make_OXA_MLE_data.py with 1 per query
and then the file I/O of the same data: writing and reading the 2.6M-record JSONL with oxa.io (every
record as a dict: the fallback path), and `oxa select` run as its own process on that file (Arrow reads
the four columns, selection, only the 50k selected lines parsed, written, histogram JSON/PNG), with its
wall time and peak resident memory.

Data (decided here, documented in the README): 2.6M records over 50,000 queries (52 responses per query
on average, Zipf-like skew), PPL log-normal around 2.3 (most inside [1, 5]), n_tokens log-normal around
6k tokens and unique (so ours and the reference must pick the identical set, which is checked), all
records verified correct. Responses are 40-character placeholders: real R1 traces (~20 KB each, ~50 GB
for 2.6M) would measure only the disk, and I/O time scales with file size.

    python benchmarks/select.py                      # full scale (~3 min on 2 cores)
    python benchmarks/select.py --records 200000     # quick
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's `select` module, which subprocess imports: keep the
# script's own directory off the import path so `import select` finds the real one.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from oxa.io import read_records, write_records  # noqa: E402
from oxa.selection import Binning, gaussian_pick, gaussian_targets, select_gaussian  # noqa: E402

MU, SIGMA, LO, HI, WIDTH = 2.5, 0.25, 1.0, 5.0, 0.05


def make_records(n: int, n_queries: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_queries + 1) ** 0.5  # some queries have many more responses
    query = rng.choice(n_queries, size=n, p=weights / weights.sum())
    ppl = rng.lognormal(math.log(2.3), 0.3, n).round(6)
    length = np.sort(rng.lognormal(math.log(6000), 0.7, n).astype(np.int64))
    length = length + np.arange(n)  # strictly increasing: unique lengths
    length = length[rng.permutation(n)]
    texts = [f"Problem {q}: compute the value of the expression." for q in range(n_queries)]
    return [
        {"id": i, "query": texts[q], "response": "<think>placeholder reasoning</think> \\boxed{1}", "ppl": float(p),
         "n_tokens": int(t), "correct": True}
        for i, (q, p, t) in enumerate(zip(query.tolist(), ppl.tolist(), length.tolist()))
    ]


def naive_select(records: list[dict], total: int, seed: int = 42) -> list[dict]:
    """The reference's loop (MAX_RESP_PER_QUERY = 1, so one round per bin)."""
    num_bins = int(round((HI - LO) / WIDTH))
    pdf = [(1.0 / (SIGMA * math.sqrt(2 * math.pi))) * math.exp(-0.5 * ((LO + (i + 0.5) * WIDTH - MU) / SIGMA) ** 2)
           for i in range(num_bins)]
    desired = [p / sum(pdf) * total for p in pdf]
    targets = [int(math.floor(d)) for d in desired]
    fractions = sorted(((d - math.floor(d), i) for i, d in enumerate(desired)), key=lambda x: x[0], reverse=True)
    for k in range(total - sum(targets)):
        targets[fractions[k][1]] += 1
    bins = defaultdict(list)
    for r in records:
        p = float(r["ppl"])
        if p < LO or p > HI:
            continue
        idx = min(int((p - LO) / WIDTH + 1e-9), num_bins - 1)
        bins[idx].append({"query": r["query"], "response": r["response"], "ppl": p, "len": int(r["n_tokens"])})
    rnd = random.Random(seed)
    per_query = defaultdict(int)
    out = []
    for b in range(num_bins):
        if targets[b] <= 0:
            continue
        taken = 0
        for it in sorted(bins.get(b, []), key=lambda x: (x["len"], rnd.random()), reverse=True):
            if taken >= targets[b]:
                break
            if per_query[it["query"]] >= 1:
                continue
            per_query[it["query"]] += 1
            taken += 1
            out.append(it)
    return out


def timed(fn, repeats: int, warmup: bool = True) -> tuple[float, object]:
    if warmup:
        fn()
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_600_000)
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive-repeats", type=int, default=3)
    ap.add_argument("--skip-io", action="store_true")
    args = ap.parse_args()

    print(f"generating {args.records:,} records over {args.queries:,} queries ...", flush=True)
    records = make_records(args.records, args.queries)

    binning = Binning(LO, HI, WIDTH)
    targets = gaussian_targets(args.n, binning, mu=MU, sigma=SIGMA)
    ppl = np.array([r["ppl"] for r in records])
    length = np.array([r["n_tokens"] for r in records], dtype=np.float64)
    codes: dict[str, int] = {}
    group = np.array([codes.setdefault(r["query"], len(codes)) for r in records])
    bins = binning.index(ppl)

    def core():
        return gaussian_pick(bins, length, group, targets, max_per_query=1, seed=0, redistribute=False)

    t_core, pick = timed(core, args.repeats)
    t_ours, sel = timed(lambda: select_gaussian(records, args.n), args.repeats)
    t_naive, naive = timed(lambda: naive_select(records, args.n), args.naive_repeats, warmup=False)

    ours_ids = {(records[i]["query"], records[i]["n_tokens"]) for i in sel.indices}
    naive_ids = {(it["query"], it["len"]) for it in naive}
    assert ours_ids == naive_ids, "ours and the reference loop selected different records"
    assert len(pick.indices) == len(sel.indices)

    tracemalloc.start()
    select_gaussian(records, args.n)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"\nselect {args.n:,} of {args.records:,} (mu={MU}, sigma={SIGMA}, 1 per query): "
          f"{len(sel.indices):,} selected, {sel.stats['short_bins']} bins short, identical to the reference: yes")
    print(f"  ours-core (arrays)     {t_core:8.3f} s   median of {args.repeats}")
    print(f"  ours (list of dicts)   {t_ours:8.3f} s   median of {args.repeats}; extra memory {traced_peak / 2**20:,.0f} MiB")
    print(f"  naive reference loop   {t_naive:8.3f} s   median of {args.naive_repeats}")
    print(f"  speed-up: {t_naive / t_ours:.1f}x (same input), {t_naive / t_core:.0f}x for the core alone")

    if not args.skip_io:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "scored.jsonl", Path(tmp) / "ce.jsonl"
            t0 = time.perf_counter()
            write_records(src, records)
            t_write = time.perf_counter() - t0
            del records, sel, naive
            t0 = time.perf_counter()
            back = read_records(src)
            t_read = time.perf_counter() - t0
            del back
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "oxa.cli", "select", str(src), "-o", str(out), "--n", str(args.n)],
                           check=True, stderr=subprocess.DEVNULL)
            t_stage = time.perf_counter() - t0
            stage_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
            size = src.stat().st_size
        print(f"\nI/O of the {size / 2**20:,.0f} MiB JSONL ({args.records:,} records):")
        print(f"  write_records          {t_write:8.2f} s")
        print(f"  read_records           {t_read:8.2f} s   (every record as a dict; the fallback path)")
        print(f"  `oxa select` process   {t_stage:8.2f} s   peak memory {stage_peak:.2f} GiB "
              f"(start-up + Arrow column read + select + parse/write {args.n:,} rows + hist JSON/PNG)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory of this benchmark process (data + naive copies): {peak:.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
