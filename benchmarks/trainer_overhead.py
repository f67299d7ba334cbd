"""Training throughput of `oxa train --method oxa-full` against TRL's SFTTrainer doing completion-only SFT.

Same tiny Qwen2, same tokenised examples (encoded as `oxa train` does), same rows per optimizer step and
micro-batch size, same optimizer settings. TRL's side is what a user would pick instead: ``SFTTrainer`` with
``completion_only_loss=True`` on the pre-tokenised rows (``input_ids`` + ``completion_mask``), plain CE on
every row, fp32 and no gradient checkpointing like ours (TRL's defaults are bf16 and checkpointing). Ours is OxaTrainer with the batch composer, half the rows CE and half UL (the fused CE+UL
loss). Tokens per second counts the non-padding tokens of every micro-batch over the timed
``trainer.train()``; each side gets a warm-up run, then the two alternate ``--repeats`` times (medians).
Goal: ours >= 1.0x TRL.

    python benchmarks/trainer_overhead.py [--hidden 128 --layers 2 --steps 10 --repeats 2 --threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch


def examples(tokenizer, n: int):
    """Tokenised (query, response) pairs of varied length, encoded as `oxa train` does."""
    from oxa.prompting import PromptFormat
    from oxa.records import Fields
    from oxa.training.data import encode_records

    rows = []
    for i in range(n):
        a, b = 10 + i % 89, 7 + (i * 13) % 97
        steps = " ".join(f"{a} + {k} = {a + k}." for k in range(1 + i % 6))
        rows.append({"query": f"What is {a} + {b}?", "response": f"<think>{steps} {a} + {b} = {a + b}</think> \\boxed{{{a + b}}}"})
    encoded, _ = encode_records(rows, tokenizer, fmt=PromptFormat(), fields=Fields(), cutoff_len=4096,
                                policy="drop", source="synthetic")
    return encoded


class Counting:
    """Wraps a collator and counts the non-padding tokens it hands out."""

    def __init__(self, collate):
        self.collate, self.tokens = collate, 0

    def __call__(self, items):
        batch = self.collate(items)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


def run(variant: str, state, model_config, tokenizer, ce, ul, args, out_dir) -> float:
    from transformers import AutoModelForCausalLM, TrainingArguments

    from oxa.training.composer import BatchComposer
    from oxa.training.data import Collator, ComposedDataset
    from oxa.training.trainer import OxaTrainer

    model = AutoModelForCausalLM.from_config(model_config)
    model.load_state_dict(state)
    rows = args.rows_per_step
    common = dict(output_dir=out_dir, per_device_train_batch_size=args.micro_batch_size, learning_rate=1e-4,
                  max_steps=args.steps, report_to="none", save_strategy="no", logging_steps=10 ** 9,
                  disable_tqdm=True, seed=0, dataloader_pin_memory=False)
    if variant == "ours":
        composer = BatchComposer([e.n_loss for e in ce], [e.n_loss for e in ul], ce_per_step=rows // 2,
                                 ul_per_step=rows // 2, micro_batch_size=args.micro_batch_size, seed=0)
        collate = Counting(Collator(tokenizer.pad_token_id))
        trainer = OxaTrainer(model=model, args=TrainingArguments(gradient_accumulation_steps=composer.grad_accum,
                                                                 remove_unused_columns=False, **common),
                             train_dataset=ComposedDataset(ce, ul), data_collator=collate, composer=composer,
                             alpha=1e-4)
    else:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        n_prompt = [max(e.n_prompt, 1) for e in ce + ul]  # the first token is never a target
        data = Dataset.from_list([{"input_ids": e.input_ids, "completion_mask": [0] * k + [1] * (len(e.input_ids) - k)}
                                  for e, k in zip(ce + ul, n_prompt)])
        trl_args = SFTConfig(gradient_accumulation_steps=rows // args.micro_batch_size, completion_only_loss=True,
                             max_length=None, bf16=False, gradient_checkpointing=False, **common)
        trainer = SFTTrainer(model=model, args=trl_args, train_dataset=data, processing_class=tokenizer)
        collate = Counting(trainer.data_collator)
        trainer.data_collator = collate
    start = time.perf_counter()
    trainer.train()
    return collate.tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows-per-step", type=int, default=32)
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    from oxa.tiny import build_tiny_model, train_tokenizer

    corpus = [f"What is {a} + {b}? <think>{a} + {b} = {a + b}</think> \\boxed{{{a + b}}}" for a in range(200) for b in range(0, 200, 7)]
    tokenizer = train_tokenizer(corpus, vocab_size=args.vocab)
    model = build_tiny_model(tokenizer, hidden=args.hidden, layers=args.layers, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ex = examples(tokenizer, 2 * args.rows_per_step * args.steps)
    ce, ul = ex[: len(ex) // 2], ex[len(ex) // 2:]
    results = {"trl": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        warm = argparse.Namespace(**{**vars(args), "steps": 2})
        for variant in ("trl", "ours"):  # warm-up
            run(variant, state, model.config, tokenizer, ce, ul, warm, tmp)
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            for variant in ("trl", "ours"):
                results[variant].append(run(variant, state, model.config, tokenizer, ce, ul, args, tmp))
    trl, ours = statistics.median(results["trl"]), statistics.median(results["ours"])
    print(f"tiny Qwen2 hidden {args.hidden} x {args.layers} layers, vocab {len(tokenizer)}, {args.rows_per_step} rows/step "
          f"(micro-batch {args.micro_batch_size}), {args.steps} steps, median of {args.repeats}")
    print(f"  TRL SFTTrainer, completion-only CE        : {trl:9.0f} tokens/s   runs {[round(x) for x in results['trl']]}")
    print(f"  oxa-full (OxaTrainer, CE + UL, fused loss): {ours:9.0f} tokens/s   runs {[round(x) for x in results['ours']]}")
    print(f"  ratio oxa-full / TRL = {ours / trl:.3f}")


if __name__ == "__main__":
    main()
