"""Scoring throughput: `oxa.scoring` vs the model's forward-only limit and the naive way, in one run.

Forward-only (the limit of the approach): the model's plain forward pass (logits at every position, no
log-softmax, nothing read out) over the very same tokens with no padding at all: the records' tokens
back to back, cut into rows of ``--pack-length`` tokens, ``--token-budget`` tokens per pass. The
default row length is the token-weighted mean record length sum(L^2)/sum(L), at which causal attention
does the same work per token as over the records one by one (a row of P tokens attends P/2 back on
average; a record of L tokens, L/2). Scoring must at least run this forward over every token; goal:
ours >= 0.8x its tokens/s.

Naive (what the reference code and most scripts do): fixed-size batches in file order, padded to the
longest sequence of the batch, full-vocabulary fp32 logits, log_softmax, then the response positions.
Ours (what `oxa score` runs): length-sorted windows packed into token-budget batches, the output head only at scored positions,
a chunk at a time. Both use the same tokenization (encode_example) and report the same PPL definition.

The records have long-tailed response lengths (log-normal, a few hundred tokens typical, a tail
into the thousands), as teacher reasoning traces do. The tiny model's embedding matrix is padded to
--vocab rows (as Qwen pads 151,665 tokens to 151,936) so the output head costs what a larger vocabulary
costs. Prints tokens/s of all three, ours / forward-only, ours / naive, and the largest relative PPL
difference between ours and naive. Example:

    python benchmarks/score.py [--records 128 --repeats 2 --threads 1]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

import torch

from oxa.prompting import PromptFormat, encode_example, response_mask
from oxa.scoring import score_records
from oxa.tiny import build_tiny_model, train_tokenizer


def make_records(n: int, max_tokens: int, seed: int) -> list[dict]:
    """Arithmetic worked solutions whose lengths follow a long-tailed (log-normal) distribution."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        n_tokens = min(max_tokens, max(8, int(rng.lognormvariate(math.log(150), 0.9))))
        lines, length = [], 0
        while length < n_tokens:
            k = len(lines)
            lines.append(f"Step {k + 1}: {a + k} + {b} = {a + b + k}, so we carry on.")
            length += 24  # about the tokens one such line takes with the benchmark tokenizer
        text = "<think>\n" + "\n".join(lines) + "\n</think>\n\\boxed{" + str(a + b) + "}"
        records.append({"id": i, "query": f"What is {a} + {b}? Show every step.", "response": text})
    return records


@torch.inference_mode()
def naive_scores(records: list[dict], model, tokenizer, fmt: PromptFormat, batch_size: int) -> list[float]:
    """Fixed batches in file order, padded to the longest, full fp32 logits."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(records), batch_size):
        encs = [encode_example(tokenizer, r["query"], r["response"], fmt) for r in records[s : s + batch_size]]
        width = max(len(e.input_ids) for e in encs)
        ids = torch.full((len(encs), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for row, e in enumerate(encs):
            ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
            attention[row, : len(e.input_ids)] = 1
            mask[row, : len(e.input_ids)] = torch.tensor(response_mask(e))
        ids, attention, mask = ids.to(device), attention.to(device), mask.to(device)
        logprobs = model(input_ids=ids, attention_mask=attention).logits.float().log_softmax(-1)
        token_lp = logprobs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
        scored = mask[:, 1:]
        nll = -(token_lp * scored).sum(1).double() / scored.sum(1)
        out += torch.exp(nll).tolist()
    return out


@torch.inference_mode()
def forward_only(stream: torch.Tensor, model, pack_length: int, token_budget: int) -> None:
    """The model's forward over ``stream`` cut into rows of ``pack_length`` tokens: not one padding token."""
    device = next(model.parameters()).device
    per_pass = max(1, token_budget // pack_length) * pack_length
    for s in range(0, len(stream), per_pass):
        chunk = stream[s : s + per_pass]
        full = len(chunk) // pack_length * pack_length
        for part in (chunk[:full].view(-1, pack_length), chunk[full:].view(1, -1)):
            if part.numel():
                model(input_ids=part.to(device))


def timed(fns, repeats: int, device: torch.device) -> tuple[list[float], list[float], list[object]]:
    """Median seconds and peak device memory (GiB, CUDA only) of each, alternating them so load
    changes on a shared machine hit all alike."""
    times: tuple[list[float], ...] = tuple([] for _ in fns)
    peaks = [0.0] * len(fns)
    results: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            results[k] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                peaks[k] = max(peaks[k], torch.cuda.max_memory_allocated(device) / 2**30)
            times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], peaks, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=128)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=None, help="MLP width [default: 4 x hidden]")
    p.add_argument("--vocab", type=int, default=8192, help="output head rows (logit cost grows with it)")
    p.add_argument("--token-budget", type=int, default=16384, help="ours: padded tokens per batch")
    p.add_argument("--batch-size", type=int, default=16, help="naive: records per batch")
    p.add_argument("--pack-length", type=int, default=None,
                   help="forward-only: tokens per packed row [default: token-weighted mean record length]")
    p.add_argument("--threads", type=int, default=1, help="torch threads, all sides")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    records = make_records(args.records, args.max_tokens, args.seed)
    tokenizer = train_tokenizer([r["query"] + "\n" + r["response"] for r in records[:200]], vocab_size=1024)
    model = build_tiny_model(tokenizer, hidden=args.hidden, layers=args.layers, heads=args.heads,
                             kv_heads=args.kv_heads, intermediate=args.intermediate,
                             max_positions=2 * args.max_tokens + 512, seed=args.seed)
    model.resize_token_embeddings(max(args.vocab, len(tokenizer)), mean_resizing=False)
    device = torch.device(args.device)
    model = model.to(device=device, dtype=getattr(torch, args.dtype)).eval()
    fmt = PromptFormat()
    lengths = [len(encode_example(tokenizer, r["query"], r["response"], fmt).input_ids) for r in records]
    n_tokens = sum(lengths)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{len(records)} records, {n_tokens} tokens (median {int(statistics.median(lengths))}, "
          f"max {max(lengths)}); model {params:.1f}M params, vocab {model.config.vocab_size}, "
          f"hidden {args.hidden} x {args.layers} layers, {args.dtype} on {device}"
          + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""))

    warm = records[:32]
    stream = torch.tensor([t for r in records for t in encode_example(tokenizer, r["query"], r["response"], fmt).input_ids])
    pack = args.pack_length or round(sum(n * n for n in lengths) / n_tokens)
    naive_scores(warm, model, tokenizer, fmt, args.batch_size)
    score_records(warm, model, tokenizer, fmt=fmt, token_budget=args.token_budget, progress=False)
    forward_only(stream[: args.token_budget], model, pack, args.token_budget)

    (t_naive, t_ours, t_fwd), peaks, (naive, ours, _) = timed(
        [lambda: naive_scores(records, model, tokenizer, fmt, args.batch_size),
         lambda: score_records(records, model, tokenizer, fmt=fmt, token_budget=args.token_budget, progress=False),
         lambda: forward_only(stream, model, pack, args.token_budget)],
        args.repeats,
        device,
    )
    rel = max(abs(o["ppl"] - n) / n for o, n in zip(ours, naive))
    mem = [f"  peak {peak:6.1f} GiB" if device.type == "cuda" else "" for peak in peaks]
    print(f"naive (batch {args.batch_size}, file order, full logits):         {t_naive:8.2f} s "
          f"{len(records) / t_naive:8.1f} rec/s {n_tokens / t_naive:9.0f} tok/s{mem[0]}")
    print(f"oxa   (token budget {args.token_budget}, sorted, chunked head): {t_ours:8.2f} s "
          f"{len(records) / t_ours:8.1f} rec/s {n_tokens / t_ours:9.0f} tok/s{mem[1]}")
    print(f"forward only (packed rows of {pack}, no padding):   {t_fwd:8.2f} s "
          f"{len(records) / t_fwd:8.1f} rec/s {n_tokens / t_fwd:9.0f} tok/s{mem[2]}")
    print(f"ours / forward-only {t_fwd / t_ours:.2f}x, ours / naive {t_naive / t_ours:.2f}x (median of {args.repeats}); "
          f"max relative PPL difference {rel:.2e}")


if __name__ == "__main__":
    main()
