"""Peak memory and time of the chunked CE + UL loss against the naive full-logits computation.

Both compute the same thing -- per-token CE on half the tokens, alpha * UL on the other half, the
entropy of every token's distribution, and the gradients for the hidden states and the output
projection -- at Qwen2.5-Math-1.5B's shape (hidden 1536, vocabulary 151,936). Needs only torch and
``oxa.losses`` (copy both files to a GPU machine and run):

    python benchmarks/loss_memory.py                                  # CPU, 4,096 tokens, fp32
    python benchmarks/loss_memory.py --device cuda --tokens 32768 --dtype bfloat16

Memory on CPU: each variant runs in its own subprocess; the figure is the rise of the process's peak
resident set (``ru_maxrss``) from after the inputs are allocated to after forward + backward (torch's CPU
allocations are invisible to tracemalloc). On CUDA: ``torch.cuda.max_memory_allocated`` over the same
span. Gradients are included for both variants, so the output projection's gradient (V x H fp32,
0.93 GB here) is in both figures. Values and gradients are compared between the variants.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from oxa.losses import CE, UL, fused_token_losses

ALPHA = 1e-4


def inputs(tokens: int, hidden: int, vocab: int, dtype: torch.dtype, device: str):
    # filled in place: a temporary here would raise the peak-RSS baseline and hide later allocations
    g = torch.Generator(device=device).manual_seed(0)
    h = torch.empty(tokens, hidden, device=device, dtype=dtype).normal_(generator=g).requires_grad_()
    w = torch.empty(vocab, hidden, device=device, dtype=dtype).normal_(std=4 / hidden ** 0.5, generator=g)
    w.requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=g, device=device)
    kinds = torch.where(torch.arange(tokens) < tokens // 2, CE, UL).to(device)
    weights = torch.where(kinds == UL, ALPHA, 1.0).to(torch.float32) / (tokens // 2)
    return h, w, targets, kinds, weights


def naive(h, w, targets, kinds, weights):
    """The straightforward way (and the reference code's): full fp32 logits, log-softmax, entropy pass."""
    logits = (h @ w.T).float()
    logp = torch.log_softmax(logits, dim=-1)
    logp_y = logp.gather(1, targets[:, None]).squeeze(1)
    p_y = logp_y.exp().clamp(max=1 - 1e-6)
    token_loss = torch.where(kinds == UL, -torch.log1p(-p_y), -logp_y)
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
    return (token_loss * weights).sum(), entropy


def ours(h, w, targets, kinds, weights, chunk_size):
    out = fused_token_losses(h, w, targets, kinds, weights, chunk_size=chunk_size)
    return out.loss, out.entropy


def run_variant(args) -> dict:
    """One variant: peak memory of the first forward + backward, then the median time of repeats."""
    dtype = getattr(torch, args.dtype)
    cuda = args.device == "cuda"
    h, w, targets, kinds, weights = inputs(args.tokens, args.hidden, args.vocab, dtype, args.device)
    fn = naive if args.variant == "naive" else (lambda *a: ours(*a, args.chunk_size))

    def step():
        h.grad = w.grad = None
        loss, entropy = fn(h, w, targets, kinds, weights)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return loss, entropy

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        start = time.perf_counter()
        loss, entropy = step()
        first = time.perf_counter() - start
    except torch.OutOfMemoryError:
        return {"variant": args.variant, "oom": True}
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    sample_rows = torch.randperm(args.vocab, generator=torch.Generator().manual_seed(1))[:64].to(args.device)
    result = {"variant": args.variant, "peak_bytes": peak, "loss": loss.item(), "entropy_sum": entropy.sum().item(),
              "grad_h": h.grad.float().cpu(), "grad_w_rows": w.grad[sample_rows].float().cpu()}
    h.grad = w.grad = None
    times = []
    del loss, entropy
    try:
        for _ in range(args.repeats):
            h.grad = w.grad = None
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:  # the measured run fitted, a repeat did not (fragmentation): keep its time
        times = []
    result["seconds"] = statistics.median(times) if times else first  # CPU default: the measured run itself
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--chunk-size", type=int, default=None, help="tokens per chunk (default: ~16M logits)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats after the measured run, median reported (default: 0 on CPU, i.e. the measured run's time; 5 on CUDA)")
    parser.add_argument("--variant", choices=["naive", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 5 if args.device == "cuda" else 0

    if args.variant:  # a subprocess measuring one variant
        torch.save(run_variant(args), args.result)
        return

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("naive", "ours"):
            out = os.path.join(tmp, f"{variant}.pt")
            cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant, "--result", out]
            env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
            subprocess.run(cmd, check=True, env=env)
            results[variant] = torch.load(out)

    shape = f"{args.tokens} tokens x vocab {args.vocab} x hidden {args.hidden}, {args.dtype}, {args.device}"
    print(f"chunked CE+UL loss vs naive full logits ({shape}); forward + backward, entropy included")
    ours_r, naive_r = results["ours"], results["naive"]
    gib = 2 ** 30
    print(f"  ours : peak +{ours_r['peak_bytes'] / gib:6.2f} GiB   time {ours_r['seconds']:.3f} s")
    if naive_r.get("oom"):
        print("  naive: out of memory")
        return
    print(f"  naive: peak +{naive_r['peak_bytes'] / gib:6.2f} GiB   time {naive_r['seconds']:.3f} s")
    print(f"  memory ratio ours/naive = {ours_r['peak_bytes'] / naive_r['peak_bytes']:.3f} "
          f"(naive/ours = {naive_r['peak_bytes'] / ours_r['peak_bytes']:.1f}x)   "
          f"time ratio ours/naive = {ours_r['seconds'] / naive_r['seconds']:.2f}")
    diff_h = (ours_r["grad_h"] - naive_r["grad_h"]).abs().max().item()
    diff_w = (ours_r["grad_w_rows"] - naive_r["grad_w_rows"]).abs().max().item()
    print(f"  same result: |loss diff| = {abs(ours_r['loss'] - naive_r['loss']):.2e} (loss {ours_r['loss']:.6f}), "
          f"max |grad_h diff| = {diff_h:.2e}, max |grad_W diff| (64 rows) = {diff_w:.2e}, "
          f"entropy sum {ours_r['entropy_sum']:.4f} vs {naive_r['entropy_sum']:.4f}")
    print(json.dumps({"ours_peak_bytes": ours_r["peak_bytes"], "naive_peak_bytes": naive_r["peak_bytes"],
                      "ours_seconds": ours_r["seconds"], "naive_seconds": naive_r["seconds"]}))


if __name__ == "__main__":
    main()
