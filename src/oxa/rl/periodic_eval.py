"""Held-out evaluation during RL through `oxa eval`'s code, and the paper's checkpoint choice.

Every ``eval.every`` optimizer steps (and at step 0 and the last step) the current policy samples
``eval.n`` answers per problem of ``eval.benchmarks`` with :func:`oxa.evaluation.evaluate` - the same
prompts, sampler, grader and Pass@k as ``oxa eval`` - into ``OUTPUT_DIR/eval/step-NNNNNN/``. Under
torchrun every process samples its share. The Pass@k values join ``rl_metrics.jsonl`` and ``report_to``;
the policy with the best Pass@1 on ``eval.best_by`` so far is saved as ``OUTPUT_DIR/best/`` (with
``best.json`` saying which step and value), as the paper picks its RL checkpoint by AIME24.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from accelerate.utils import broadcast_object_list
from transformers import TrainerCallback
from trl.models import unwrap_model_for_generation

import oxa.synth  # noqa: F401  (registers the synthetic world's benchmarks: synth, synth-easy, ...)
from oxa.evaluation import EvalConfig, evaluate
from oxa.evaluation.run import benchmark_key
from oxa.generation import TransformersBackend
from oxa.io import write_json
from oxa.rl.config import RLConfig

BEST_FILE = "best.json"


def eval_metrics(results: dict) -> dict[str, float]:
    """``eval/<benchmark>/pass@k`` for every k, the policy entropy ``oxa eval`` measured, and with several
    benchmarks ``eval/average/pass@1``, their unweighted mean (the paper's "Avg.")."""
    metrics = {}
    for name, b in results["benchmarks"].items():
        metrics.update({f"eval/{name}/pass@{k}": v for k, v in b["pass@k"].items()})
        if b.get("entropy") is not None:
            metrics[f"eval/{name}/entropy"] = b["entropy"]
    if len(results["benchmarks"]) > 1:
        metrics["eval/average/pass@1"] = results["average"]["pass@1"]
    return metrics


class PeriodicEval(TrainerCallback):
    """Evaluates ``trainer``'s policy on the schedule of ``cfg.eval`` and keeps the best as ``best/``."""

    def __init__(self, trainer, cfg: RLConfig):
        self.trainer, self.cfg = trainer, cfg
        self.best_dir = Path(cfg.output_dir) / "best"
        best = cfg.eval.best_benchmark
        self.best_key = f"eval/{best if best == 'average' else benchmark_key(best)}/pass@1"
        stored = self.best_dir / BEST_FILE
        self.best = json.loads(stored.read_text(encoding="utf-8"))["value"] if stored.exists() else None
        settings = cfg.model_dump_json(exclude={"eval", "report_to", "logging_steps", "save_steps", "save_total_limit",
                                                "resume_from_checkpoint", "output_dir"})
        self.run_id = hashlib.sha1(settings.encode()).hexdigest()[:10]

    def on_train_begin(self, args, state, control, **kwargs):
        if self.cfg.eval.at_start and state.global_step == 0:
            self.evaluate(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.cfg.eval.every == 0 or state.global_step >= state.max_steps:
            self.evaluate(state.global_step)

    def evaluate(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        trainer, ev = self.trainer, self.cfg.eval
        config = EvalConfig(
            model=f"{self.cfg.model} after {step} GRPO steps (run {self.run_id})", benchmarks=ev.benchmarks,
            output=Path(self.cfg.output_dir) / "eval" / f"step-{step:06d}", n=ev.n, temperature=ev.temperature,
            top_p=ev.top_p, max_new_tokens=ev.max_new_tokens or self.cfg.max_response_length, limit=ev.limit,
            data_dir=self.cfg.data_dir, seed=self.cfg.seed, batch_size=ev.batch_size, prompt=self.cfg.prompt,
            progress=False)
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs) as model:
            results = evaluate(config, backend=TransformersBackend(model, trainer.processing_class,
                                                                   batch_size=ev.batch_size))
        shared = [eval_metrics(results) if trainer.accelerator.is_main_process else None]
        metrics = broadcast_object_list(shared, from_process=0)[0]
        trainer.eval_row(step, metrics)
        self._keep_best(step, metrics[self.best_key])
        trainer.add_eval_seconds(time.perf_counter() - started)
        return metrics

    def _keep_best(self, step: int, value: float) -> None:
        """Save the policy as best/ when ``value`` beats every earlier evaluation (all processes take part:
        DeepSpeed gathers the weights); it is written beside best/ and renamed into place."""
        if self.best is not None and value <= self.best:
            return
        self.best = value
        trainer = self.trainer
        staging = self.best_dir.with_name("best.partial")
        trainer.save_model(str(staging))
        if trainer.accelerator.is_main_process:
            write_json(staging / BEST_FILE, {"step": step, "metric": self.best_key, "value": value})
            previous = self.best_dir.with_name("best.previous")
            if self.best_dir.exists():
                os.replace(self.best_dir, previous)
            os.replace(staging, self.best_dir)
            shutil.rmtree(previous, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
