"""`OxaGRPOTrainer`: TRL's GRPOTrainer with oxa's prompts, rollouts, policy losses and metrics.

Built against trl 1.16 (pinned in pyproject.toml: the methods overridden here are private). What
differs from a plain ``GRPOTrainer``, and why:

* ``_get_train_sampler``: TRL's sampler draws every epoch's prompt order from one generator advanced epoch
  after epoch, so a run resumed in epoch k > 0 would replay epoch 0's order; here epoch k's order is
  seeded by (seed, k) (the Trainer calls ``set_epoch``), and the resumed run sees the same next prompts.
* ``_tokenize_prompts``: the dataset's ``prompt`` is the bare query; its tokens come from
  :func:`oxa.prompting.encode_prompt`, the one prompt definition of scoring, training, generation and
  evaluation (TRL would render its own chat template call).
* ``_generate_single_turn`` (``rollout_backend: oxa``): oxa's sampler (:mod:`oxa.rl.rollout`) instead of
  ``model.generate``; ``trl`` and ``vllm`` keep TRL's paths.
* ``_generate``: grades the rollouts right after sampling and hands the graded batch to the rollout
  transform (SCOPE's salvage hook) *before* old/reference log-probabilities and advantages are computed,
  since a transform may replace tokens; ``_calculate_rewards`` then returns those rewards.
  A transform that joins rollouts to their groups changes the rows: TRL's ``prompts`` list (which sizes this
  process's slice of the advantages) is rewritten in place to match, and ``num_generations`` is the joined
  group size until the advantages are computed, so TRL's own nan-aware group baseline sees each group as it
  stands, padding rows (reward NaN) left out.
* ``_generate_and_score_completions``: adds the per-token ``off_policy`` mask a transform set, and masks
  padding rows out of the loss.
* ``_prepare_inputs``: stamps each micro-batch with its optimizer step's global token / sequence counts,
  so "token-mean" is exactly a mean over every response token of the step, across processes.
* ``_compute_loss``: :func:`oxa.rl.policy_loss.policy_loss` (vanilla / Clip-Cov / KL-Cov, LUFFY for
  off-policy tokens) plus ``kl_coef`` x verl's low-variance KL and ``entropy_coef`` x entropy, aggregated
  as ``loss_aggregation`` says; per-token entropy, KL, clip and selection counts are summed for the log.
* ``log``: adds the :mod:`oxa.rl.metrics` row and appends it to ``OUTPUT_DIR/rl_metrics.jsonl``.

Advantages stay TRL's: (r - group mean) / (group std + 1e-4) with ``scale_rewards="group"`` (verl adds
1e-6; a group whose rewards are all equal gets advantage 0 either way).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather, gather_object
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler

from oxa.generation import SamplingParams, sample_seed
from oxa.prompting import encode_prompt
from oxa.rl.config import RLConfig
from oxa.rl.metrics import MetricsFile, StepMetrics
from oxa.rl.policy_loss import loss_mask, low_var_kl, policy_loss
from oxa.rl.rollout import RolloutBatch, RolloutTransform, rollout_seeds, sample_rollouts


class OxaGRPOTrainer(GRPOTrainer):
    """GRPO with the settings of ``rl`` (see the module docstring for what is overridden)."""

    def __init__(self, *args, rl: RLConfig, rollout_transform: RolloutTransform | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rl = rl
        self.rollout_transform = rollout_transform
        self.step_metrics = StepMetrics(self.accelerator.device)
        self.metrics_file = MetricsFile(Path(self.args.output_dir) / "rl_metrics.jsonl")
        self._rollout_inputs: list[dict] | None = None
        self._rollout_rewards: torch.Tensor | None = None
        self._off_policy: list[list[bool]] | None = None
        self._padding: list[bool] | None = None
        self._window_start = time.perf_counter()
        self._window_steps_at = 0
        self.add_callback(_WindowStart(self))

    # ------------------------------------------------------------------------------------------ rollouts

    def _get_train_sampler(self, dataset=None):  # TRL's sampler, made epoch-seeded
        return EpochSeededRepeatSampler(
            data_source=self.train_dataset if dataset is None else dataset, mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation, shuffle=self.shuffle_dataset,
            seed=self.args.seed)

    def _tokenize_prompts(self, prompts: list):
        return [encode_prompt(self._tokenizer, query, self.rl.prompt) for query in prompts], None, {}

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.rl.rollout_backend != "oxa":
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        params = SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_completion_length)
        first = self.accelerator.process_index * len(prompt_ids)
        seeds = rollout_seeds(self.args.seed, self.state.global_step, first, len(prompt_ids))
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                         gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs) as model:
            completion_ids = sample_rollouts(model, self._tokenizer, [list(p) for p in prompt_ids], seeds, params,
                                             batch_size=self.rl.rollout_batch_size)
        return completion_ids, None

    def _generate(self, prompts: list):
        started = time.perf_counter()
        (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images,
         tool_images) = super()._generate(prompts)
        generated = time.perf_counter()
        inputs = self._rollout_inputs
        rewards = GRPOTrainer._calculate_rewards(self, inputs, prompts, completions, completion_ids)  # TRL's grading
        rank = self.accelerator.process_index
        batch = RolloutBatch(records=inputs, prompt_ids=prompt_ids, completion_ids=completion_ids,
                             completions=completions, rewards=rewards[rank * len(prompts):(rank + 1) * len(prompts)],
                             logprobs=logprobs)
        statuses = self._reward_statuses()
        graded = time.perf_counter()
        if self.rollout_transform is not None:
            batch = self.rollout_transform(batch, self)
            self._reward_statuses()  # the transform's own grading is reported in its metrics, not as rollouts
        if batch.group_size is not None:  # rows were joined: TRL's view of the rows follows (module docstring)
            prompts[:] = [r["prompt"] for r in batch.records]
            self.num_generations = batch.group_size
        self._rollout_rewards = gather(batch.rewards)
        self._off_policy, self._padding = batch.off_policy, batch.padding
        self._log_rollouts(batch, statuses)
        if self.model.training:
            self.step_metrics.seconds["generation"] += generated - started
            self.step_metrics.seconds["grading"] += graded - generated
        return (batch.prompt_ids, batch.completion_ids, tool_mask, batch.completions, batch.logprobs, extra_fields,
                images, tool_images)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        return self._rollout_rewards  # graded (and possibly transformed) in _generate, gathered over processes

    def _reward_statuses(self) -> Counter[str]:
        """Reward statuses (correct / incorrect / no_think / ...) of this batch, summed over processes."""
        local = Counter()
        for func in self.reward_funcs:
            if hasattr(func, "pop_stats"):
                local.update(func.pop_stats())
        total = Counter()
        for counts in gather_object([dict(local)]):
            total.update(counts)
        return total

    def _log_rollouts(self, batch: RolloutBatch, statuses: Counter[str]) -> None:
        device = self.accelerator.device
        eos = set(self.eos_token_ids)
        rows = batch.completion_ids
        real = gather(torch.tensor([not p for p in batch.padding or [False] * len(rows)], device=device))
        lengths = gather(torch.tensor([len(c) for c in rows], device=device))[real]
        truncated = gather(torch.tensor([c[-1] not in eos if c else True for c in rows], device=device))[real]
        totals = (self._rollout_rewards * self.reward_weights.to(device)).nansum(dim=1)
        totals[~real] = float("nan")  # padding rows: no rollout (every process holds as many rows)
        extra: dict[str, list[float]] = {}
        for metrics in gather_object([batch.metrics]):  # a transform's metrics, averaged over processes
            for k, v in metrics.items():
                extra.setdefault(k, []).append(float(v))
        extra = {k: sum(v) / len(v) for k, v in extra.items()}
        if self.model.training:
            self.step_metrics.add_rollouts(totals, self.num_generations, lengths, truncated, statuses, extra)

    def _generate_and_score_completions(self, inputs):
        self._rollout_inputs = inputs
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            self.num_generations = self.args.num_generations  # joined groups are this batch's only
        off = torch.zeros_like(out["completion_mask"], dtype=torch.bool)
        for i, row in enumerate(self._off_policy or []):
            off[i, : len(row)] = torch.tensor(row, dtype=torch.bool)
        out["off_policy"] = off
        if self._padding is not None:
            out["completion_mask"][torch.tensor(self._padding, device=off.device)] = 0
        return out

    # ----------------------------------------------------------------------------------------- the update

    def _prepare_inputs(self, generation_batch):
        fresh = self.model.training and (
            self._step % (self.args.steps_per_generation * self.num_iterations) == 0 or self._buffered_inputs is None)
        inputs = super()._prepare_inputs(generation_batch)
        if fresh:
            self._stamp_step_sizes()
        return inputs

    def _stamp_step_sizes(self) -> None:
        """Give every micro-batch its optimizer step's response tokens, sequences with a counted token, and
        rows, summed over processes: the denominators of the loss aggregations."""
        accumulation = self.args.gradient_accumulation_steps
        for start in range(0, len(self._buffered_inputs), accumulation):
            step = self._buffered_inputs[start:start + accumulation]
            masks = [self._loss_mask(mb) for mb in step]
            local = torch.tensor([float(sum(m.sum() for m in masks)), float(sum((m.sum(-1) > 0).sum() for m in masks)),
                                  float(sum(m.shape[0] for m in masks))], dtype=torch.float64, device=self.accelerator.device)
            tokens, sequences, rows = self.accelerator.reduce(local, reduction="sum")
            for mb in step:
                mb["step_tokens"], mb["step_sequences"], mb["step_rows"] = tokens, sequences, rows

    def _loss_mask(self, inputs) -> torch.Tensor:
        mask = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        return loss_mask(mask, inputs.get("off_policy"), self.rl.off_policy_tokens)

    def _compute_loss(self, model, inputs):
        rl = self.rl
        completion_ids = inputs["completion_ids"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        response = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        logp, entropy, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled)
        old_logp = inputs.get("old_per_token_logps")
        old_logp = logp.detach() if old_logp is None else old_logp
        advantages = inputs["advantages"]
        advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
        out = policy_loss(
            logp, old_logp, advantages, response, mode=rl.policy_loss, clip_low=rl.clip_ratio_low,
            clip_high=rl.clip_ratio_high, clip_c=rl.clip_ratio_c, clip_cov_ratio=rl.clip_cov_ratio,
            clip_cov_lb=rl.clip_cov_lb, clip_cov_ub=rl.clip_cov_ub, kl_cov_ratio=rl.kl_cov_ratio,
            kl_cov_coef=rl.kl_cov_coef, off_policy=inputs.get("off_policy"), off_policy_mode=rl.off_policy_tokens,
            off_policy_gamma=rl.off_policy_gamma, generator=self._selection_generator())
        per_token = out.loss
        if "importance_sampling_ratio" in inputs:  # vLLM's sampler differs from the trained model: TRL's correction
            per_token = per_token * inputs["importance_sampling_ratio"]
        kl = None
        if self.beta != 0.0:
            kl = low_var_kl(logp, inputs["ref_per_token_logps"])
            per_token = per_token + self.beta * kl * out.mask
        if rl.entropy_coef:
            per_token = per_token - rl.entropy_coef * entropy * out.mask
        loss = self._aggregate(per_token, out.mask, inputs)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss / self.current_gradient_accumulation_steps
        with torch.no_grad():
            valid = response.bool()
            self.step_metrics.add_update(
                entropy=(entropy * valid).sum(), tokens=valid.sum(), kl=None if kl is None else (kl * valid).sum(),
                clipped=out.clipped.sum(), cov_selected=out.cov_selected.sum())
        return loss

    def _aggregate(self, per_token: torch.Tensor, mask: torch.Tensor, inputs) -> torch.Tensor:
        """This micro-batch's share of the step's loss. Processes' gradients are averaged (DDP, DeepSpeed),
        hence the factor of the process count; micro-batches' gradients add up (``loss_is_scaled_for_ga``)."""
        processes = self.accelerator.num_processes
        sums = (per_token * mask).sum(-1)
        mode = self.rl.loss_aggregation
        if mode == "token-mean":
            return sums.sum() / inputs["step_tokens"].clamp(min=1) * processes
        if mode == "seq-mean-token-mean":
            return (sums / mask.sum(-1).clamp(min=1)).sum() / inputs["step_sequences"].clamp(min=1) * processes
        if mode == "seq-mean-token-sum-norm":
            return sums.sum() / (inputs["step_rows"] * self.max_completion_length) * processes
        raise ValueError(f"unknown loss aggregation {mode!r}")

    def _selection_generator(self) -> torch.Generator:
        """Clip-Cov's random draw: seeded by (seed, step, process, micro-batch), so a resumed run draws the same."""
        micro = self._step % self.current_gradient_accumulation_steps
        key = f"clip-cov-{self.state.global_step}-{self.accelerator.process_index}"
        return torch.Generator().manual_seed(sample_seed(self.args.seed, key, micro))

    # ------------------------------------------------------------------------------------------- logging

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        row = None
        if self.model.training and "loss" in logs:
            update = self.step_metrics.update
            if self.accelerator.num_processes > 1:
                update = self.accelerator.reduce(update.clone(), reduction="sum")
            steps = max(self.state.global_step - self._window_steps_at, 1)
            now = time.perf_counter()
            row = {"step": self.state.global_step,
                   **self.step_metrics.row(update, steps=steps, seconds=now - self._window_start,
                                           with_kl=self.beta != 0.0)}
            if "learning_rate" in logs:
                row["lr"] = logs["learning_rate"]
            logs.update({k: v for k, v in row.items() if k != "step"})
            self.step_metrics.reset()
            self._window_start, self._window_steps_at = now, self.state.global_step
        super().log(logs, start_time)
        if row is not None and self.accelerator.is_main_process:
            self.metrics_file.append(row)

    def add_eval_seconds(self, seconds: float) -> None:
        self.step_metrics.seconds["eval"] += seconds

    def eval_row(self, step: int, metrics: dict[str, Any]) -> None:
        """An evaluation row: to report_to (bypassing GRPOTrainer.log, whose buffered rollout metrics belong to
        the next training row) and to rl_metrics.jsonl. Logging clears the Trainer's should_log flag, which
        is restored so that this step's training row is still logged."""
        from transformers import Trainer

        should_log = self.control.should_log
        Trainer.log(self, dict(metrics))
        self.control.should_log = should_log
        if self.accelerator.is_main_process:
            self.metrics_file.append({"step": step, **metrics})


class _WindowStart(TrainerCallback):
    """Starts the first log window when training (re)starts, at the step it (re)starts from."""

    def __init__(self, trainer: OxaGRPOTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._window_start, self.trainer._window_steps_at = time.perf_counter(), state.global_step


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's RepeatSampler whose epoch-k order depends only on (seed, k)."""

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            self.generator.manual_seed(sample_seed(self.seed, "epoch", epoch))
