"""Batched sampling vs one sample at a time, same tiny model, same samples, in one run.

    python benchmarks/generate.py [--queries 8] [--n 4] [--max-new-tokens 32] [--batch-size 64] [--repeats 3]

Both sides run :class:`oxa.generation.TransformersBackend` (KV cache, same per-sample seeds, so the
same tokens are drawn); the naive side decodes one sample at a time (``batch_size=1``). Prints the
median tokens/s of each over the repeats (after a warm-up) and their ratio. Goal: >= 3x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from oxa.generation import TransformersBackend, generate_records
from oxa.tiny import build_tiny_model, train_tokenizer

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def queries(count: int) -> list[dict]:
    if GSM8K.exists():
        with open(GSM8K, encoding="utf-8") as f:
            rows = [json.loads(line) for _, line in zip(range(count), f)]
        return [{"id": str(i), "query": r["question"]} for i, r in enumerate(rows)]
    return [{"id": str(i), "query": f"What is {i} + {i * 7}? Show the steps."} for i in range(count)]


def timed(records, backend, args) -> tuple[float, list[dict]]:
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    out = generate_records(records, n=args.n, temperature=0.6, top_p=0.95, max_new_tokens=args.max_new_tokens,
                           seed=0, backend=backend, progress=False)
    sync()
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    records = queries(args.queries)
    tok = train_tokenizer([r["query"] for r in records] * 4, vocab_size=512)
    model = build_tiny_model(tok, hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.heads // 2,
                             seed=0).to(args.device).eval()
    sides = {"batched": TransformersBackend(model, tok, batch_size=args.batch_size),
             "one at a time": TransformersBackend(model, tok, batch_size=1)}
    print(f"{args.device}, torch threads {torch.get_num_threads()}; {args.queries} queries x {args.n} samples, "
          f"<= {args.max_new_tokens} new tokens, hidden {args.hidden} x {args.layers} layers")
    rates, outputs = {}, {}
    for name, backend in sides.items():
        timed(records[:2], backend, args)  # warm-up
        runs = [timed(records, backend, args) for _ in range(args.repeats)]
        rates[name] = statistics.median(sum(r["n_tokens"] for r in out) / seconds for seconds, out in runs)
        outputs[name] = runs[-1][1]
        print(f"{name:>14}: {rates[name]:10.0f} tokens/s (median of {args.repeats}; "
              f"{sum(r['n_tokens'] for r in runs[0][1])} tokens per run)")
    print(f"{'ratio':>14}: {rates['batched'] / rates['one at a time']:.1f}x")
    same = sum(a["response"] == b["response"] for a, b in zip(*outputs.values()))
    print(f"{'same samples':>14}: {same} of {len(records) * args.n} responses identical in both batchings")


if __name__ == "__main__":
    main()
