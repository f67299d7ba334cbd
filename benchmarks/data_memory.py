"""Memory of walking a large teacher pool: ``oxa.data.iter_rows`` over a dataset directory (Arrow, mapped
from disk, a batch at a time) vs ``oxa.io.read_records`` of the same Parquet files (every row in memory).

    python benchmarks/data_memory.py [--rows 50000] [--words 800]

Writes ``--rows`` rows of ``--words`` words each as five Parquet files laid out as a hub repository
(``data/train-*.parquet``) in a temporary directory, then measures, each in a fresh process, the growth
of the process's anonymous resident memory (``RssAnon``: what a pool of millions of rows would exhaust;
mapped file pages are the page cache's, not the process's):

* iter_rows, first pass: ``datasets`` prepares its Arrow cache, then the rows are walked;
* iter_rows, again: the cache is reused (what every later pass and stage costs);
* read_records: the files read whole into a list.

Prints each with the rows and characters seen (all three must agree) and the ratio read / iter.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys
root, cache, mode = sys.argv[1:4]
def rss_anon():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon")) / 1024
import datasets
datasets.config.HF_DATASETS_CACHE = cache
datasets.disable_progress_bars()
from oxa.data import iter_rows
from oxa.io import read_records
base = peak = rss_anon()
n = chars = 0
if mode == "iter":
    for r in iter_rows(root):
        n, chars = n + 1, chars + len(r["response"])
        if n % 1000 == 0:
            peak = max(peak, rss_anon())
else:
    rows = [r for f in sorted(os.listdir(f"{root}/data")) for r in read_records(f"{root}/data/{f}")]
    n, chars, peak = len(rows), sum(len(r["response"]) for r in rows), max(peak, rss_anon())
print(json.dumps({"rows": n, "chars": chars, "mib": peak - base}))
"""


def write_pool(root: Path, rows: int, words: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    vocab = ["step", "so", "=", "+", "therefore", "x", "the", "value", "42", "\\frac{1}{2}"]
    (root / "data").mkdir(parents=True)
    per_file = -(-rows // 5)
    for part in range(5):
        batch = [{"query": f"q{part}-{i}", "response": " ".join(rng.choice(vocab) for _ in range(words))}
                 for i in range(min(per_file, rows - part * per_file))]
        pq.write_table(pa.Table.from_pylist(batch), root / "data" / f"train-{part:05d}-of-00005.parquet")


def measure(root: Path, cache: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(cache), mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--words", type=int, default=800)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "pool", Path(tmp) / "cache"
        write_pool(root, args.rows, args.words)
        results = {"iter_rows, first pass": measure(root, cache, "iter"), "iter_rows, again": measure(root, cache, "iter"),
                   "read_records": measure(root, cache, "read")}
    for name, r in results.items():
        print(f"{name:22s} {r['rows']:>9,} rows {r['chars'] / 1e6:>7.0f} M chars   RssAnon +{r['mib']:7.0f} MiB")
    assert len({(r["rows"], r["chars"]) for r in results.values()}) == 1, "the three readers saw different rows"
    again = max(results["iter_rows, again"]["mib"], 1.0)
    print(f"read_records / iter_rows (again): {results['read_records']['mib'] / again:.1f}x the memory")


if __name__ == "__main__":
    main()
