"""Benchmark: Gaussian-guided selection of 50,000 out of 2.6M scored records (the paper's AceReason scale).

Side by side in one run, after a warm-up, median of repeats:
  ours-core   oxa.selection.gaussian_pick on arrays (binning done, sort + vectorised capped walk)
  ours        oxa.selection.select_gaussian on a list of dicts (column extraction + core + histograms)
  naive       the reference script's per-record Python loop over a list of dicts (bin lists, per-bin
              sort by (length, random), dict counts), transcribed from make_OXA_MLE_data.py with 1 per query
Then end to end on the same data written as a JSONL file, each stage as its own process (start-up
included; wall time and peak resident memory, VmHWM):
  oxa         select_file, what `oxa select` runs: Arrow parses the four needed columns, selection,
              only the chosen lines are parsed and written, histogram JSON + PNG
  naive       the reference script: json.loads every line, the loop above, json.dumps the result
plus, for scale, oxa.io's write_records and read_records of all 2.6M records.

Data (decided here, documented in the README): 2.6M records over 50,000 queries (52 responses per query
on average, Zipf-like skew), PPL log-normal around 2.3 (most inside [1, 5]), n_tokens log-normal around
6k tokens and unique (so ours and the reference must pick the identical set, which is checked), all
records verified correct. Responses are 40-character placeholders: real R1 traces (~20 KB each, ~50 GB
for 2.6M) would measure only the disk, and I/O time scales with file size.

    python benchmarks/selection.py                      # full scale (~5 min on 2 shared cores)
    python benchmarks/selection.py --records 200000     # quick
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np

from oxa.io import read_records, write_records
from oxa.selection import Binning, extract_columns, gaussian_pick, gaussian_targets, select_gaussian

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


def naive_file(src: Path, out: Path, total: int) -> None:
    """The reference script end to end: json.loads every line, the loop above, json.dumps the result."""
    with open(src, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    with open(out, "w", encoding="utf-8") as f:
        for it in naive_select(records, total):
            f.write(json.dumps(it, ensure_ascii=False) + "\n")


def peak_memory_gib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return kib / 2**20


def run_child(mode: str, src: Path, out: Path, n: int) -> tuple[float, float]:
    """Wall time and peak memory of one stage run as its own process (start-up included)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--src", str(src), "--out", str(out), "--n", str(n)],
                          check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, float(proc.stdout.split()[-1])


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
    ap.add_argument("--child", choices=["oxa", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "naive":
            naive_file(args.src, args.out, args.n)
        else:
            from oxa.selection import SelectConfig, select_file

            select_file(SelectConfig(input=args.src, output=args.out, n=args.n))
        print(peak_memory_gib())
        return

    print(f"generating {args.records:,} records over {args.queries:,} queries ...", flush=True)
    records = make_records(args.records, args.queries)

    binning = Binning(LO, HI, WIDTH)
    targets = gaussian_targets(args.n, binning, mu=MU, sigma=SIGMA)
    cols = extract_columns(records, length_field="n_tokens")
    bins = binning.index(cols.ppl)

    def core():
        return gaussian_pick(bins, cols.length, cols.group, targets, max_per_query=1, seed=0, redistribute=False)

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
    print("in memory, records already loaded:")
    print(f"  ours-core (arrays)       {t_core:7.2f} s   median of {args.repeats}")
    print(f"  ours (list of dicts)     {t_ours:7.2f} s   median of {args.repeats}; "
          f"+{traced_peak / 2**20:,.0f} MiB traced allocations")
    print(f"  naive reference loop     {t_naive:7.2f} s   median of {args.naive_repeats}")
    print(f"  ratio naive/ours: {t_naive / t_ours:.1f}x on dicts, {t_naive / t_core:.1f}x for the core")

    if not args.skip_io:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "scored.jsonl"
            t0 = time.perf_counter()
            write_records(src, records)
            t_write = time.perf_counter() - t0
            del records, sel, naive
            t0 = time.perf_counter()
            back = read_records(src)
            t_read = time.perf_counter() - t0
            del back
            run_child("oxa", src, Path(tmp) / "warm.jsonl", args.n)  # warm-up: page cache, .pyc files
            t_stage, m_stage = run_child("oxa", src, Path(tmp) / "ce.jsonl", args.n)
            t_plain, m_plain = run_child("naive", src, Path(tmp) / "naive.jsonl", args.n)
            size = src.stat().st_size
        print(f"\nend to end on the {size / 2**20:,.0f} MiB JSONL file, each its own process (start-up included):")
        print(f"  oxa select               {t_stage:7.2f} s   peak memory {m_stage:.2f} GiB "
              f"(Arrow reads 4 columns, select, parse + write the {args.n:,} chosen lines, hist JSON/PNG)")
        print(f"  naive reference script   {t_plain:7.2f} s   peak memory {m_plain:.2f} GiB "
              "(json.loads every line, the loop, json.dumps)")
        print(f"  ratio naive/ours: {t_plain / t_stage:.1f}x time, {m_plain / m_stage:.1f}x memory")
        print(f"  for scale: write_records {t_write:.2f} s; read_records {t_read:.2f} s "
              "(every record as a dict: oxa's fallback for irregular files)")


if __name__ == "__main__":
    sys.exit(main())
