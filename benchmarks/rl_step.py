"""Seconds per GRPO step: `oxa rl` against plain TRL GRPOTrainer, same model, prompts and batch, in one run.

    python benchmarks/rl_step.py [--model smollm2-135m-instruct|tiny] [--prompts 4] [--n 4] [--max-new-tokens 64]
                                 [--steps 3] [--repeats 2] [--threads 2]

The TRL side is what a TRL user writes: ``GRPOTrainer`` with the prompt as a chat message (query + the paper's
suffix) and ``trl.rewards.accuracy_reward`` (math-verify in the trainer's process). The oxa side is
``oxa.rl.train_rl`` with its default reward (``oxa.rl.reward.MathReward``: math-verify in a deadline pool of
grading processes), once with oxa's rollouts and once with TRL's (``rollout_backend: trl``), which isolates the trainer's own overhead. Both use the same GRPO
settings: temperature 0.85, top-p 1, KL 0.001 to the starting model, one optimizer step per rollout batch.
Prompts are the synthetic world's RL split (nothing to download). Each run's first step is a warm-up; the
median seconds per step over the remaining steps of all repeats is printed with the ratio to TRL's.
Goal: oxa <= 1.1x TRL's time per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from oxa.prompting import PAPER_SUFFIX
from oxa.synth.world import WorldConfig, build_world


class StepClock(TrainerCallback):
    """Wall seconds of every optimizer step."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.seconds.append(now - self.last)
        self.last = now


def tiny_model(prompts: list[dict], out: Path) -> str:
    from oxa.tiny import build_tiny_model, save_tiny, train_tokenizer

    tok = train_tokenizer([p["query"] + PAPER_SUFFIX for p in prompts] * 4, vocab_size=512)
    return str(save_tiny(build_tiny_model(tok, hidden=128, layers=2, heads=4, kv_heads=2, seed=0), tok, out / "tiny"))


def run_trl(model: str, prompts: list[dict], args, out: Path) -> list[float]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from trl.rewards import accuracy_reward

    from oxa.models import load_tokenizer

    rows = [{"prompt": [{"role": "user", "content": p["query"] + PAPER_SUFFIX}], "solution": p["answer"]}
            for p in prompts]
    config = GRPOConfig(output_dir=str(out), per_device_train_batch_size=args.prompts * args.n,
                        num_generations=args.n, max_completion_length=args.max_new_tokens, temperature=0.85,
                        top_p=1.0, beta=0.001, learning_rate=2e-6, max_steps=args.steps, logging_steps=1,
                        report_to="none", bf16=False, save_strategy="no", seed=0, disable_tqdm=True)
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=accuracy_reward, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=load_tokenizer(model, padding_side="left"), callbacks=[clock])
    trainer.train()
    return clock.seconds


def run_oxa(model: str, prompts: list[dict], args, out: Path, backend: str) -> list[float]:
    from oxa.io import write_records
    from oxa.rl import RLConfig, train_rl
    from oxa.rl.reward import MathReward

    write_records(out / "prompts.jsonl", prompts)
    cfg = RLConfig(model=model, output_dir=out, prompts=str(out / "prompts.jsonl"), num_generations=args.n,
                   prompts_per_step=args.prompts, micro_batch_size=args.prompts * args.n,
                   max_response_length=args.max_new_tokens, max_steps=args.steps, rollout_backend=backend,
                   rollout_batch_size=args.prompts * args.n, seed=0)
    clock = StepClock()
    with MathReward(cfg.reward) as reward:
        train_rl(cfg, reward_funcs=[reward], callbacks=[clock], log=lambda *_: None)
    return clock.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="smollm2-135m-instruct, tiny, or a model directory")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="steps per run (the first is a warm-up)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from oxa.models import resolve

    prompts = build_world(WorldConfig(n_queries=1, rl_prompts=args.prompts * args.steps))["rl"]
    prompts = [{"id": r["id"], "query": r["query"], "answer": r["answer"]} for r in prompts]
    work = Path(tempfile.mkdtemp(prefix="rl_step."))
    model = tiny_model(prompts, work) if args.model == "tiny" else resolve(args.model)
    variants = {
        "trl GRPOTrainer": lambda out: run_trl(model, prompts, args, out),
        "oxa rl": lambda out: run_oxa(model, prompts, args, out, "oxa"),
        "oxa rl, TRL's rollouts": lambda out: run_oxa(model, prompts, args, out, "trl"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.repeats):
        for i, (name, run) in enumerate(variants.items()):
            seconds[name] += run(work / f"run{r}-{i}")[1:]
    base = statistics.median(seconds["trl GRPOTrainer"])
    print(f"\nmodel {args.model}: {args.prompts} prompts x {args.n} rollouts x <= {args.max_new_tokens} tokens per step, "
          f"{torch.get_num_threads()} threads; median of {len(seconds['oxa rl'])} steps")
    for name, values in seconds.items():
        med = statistics.median(values)
        print(f"  {name:24s} {med:8.2f} s/step   ratio to TRL {med / base:5.2f}   (steps: "
              f"{', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
