"""Settings of `oxa rl`: GRPO with a verifiable reward, in the paper's terms (its verl runs, reference.md §9).

The defaults are the authors' verl settings for Qwen2.5-Math: groups of 8 rollouts at temperature 0.85,
64 prompts per rollout batch and one optimizer step per batch (mini-batch = batch), lr 2e-6, gradient
clip 1.0, a low-variance KL loss to the starting model with coefficient 0.001, no entropy bonus, PPO
clip 0.2, token-mean loss aggregation, group-std-normalised advantages, 1,536 prompt and 16,384
response tokens. ``configs/paper/rl-*.yaml`` hold them per model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from oxa.config import StageConfig, cli
from oxa.prompting import PromptFormat
from oxa.records import Fields
from oxa.rl.policy_loss import OffPolicyMode, PolicyLossName
from oxa.rl.prefilter import PrefilterConfig
from oxa.rl.reward import RewardConfig
from oxa.rl.salvage import ScopeConfig

LossAggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
"""verl's names. token-mean: every response token of the optimizer step weighs the same (verl's default;
TRL's "dapo"); seq-mean-token-mean: each sequence's token mean, averaged over sequences (TRL's "grpo");
seq-mean-token-sum-norm: token sums divided by the maximum response length, averaged over sequences
(Dr. GRPO; TRL's "dr_grpo")."""


class RLEvalConfig(StageConfig):
    """Periodic held-out evaluation during RL, through `oxa eval`'s code, and the best-checkpoint choice."""

    benchmarks: list[str] = Field(default_factory=list, description="Benchmarks (names or record files) evaluated "
                                  "every `every` steps; none: no evaluation.")
    every: int = Field(50, ge=1, description="Evaluate every N optimizer steps (and before the first step).")
    at_start: bool = Field(True, description="Also evaluate the starting model (step 0).")
    n: int = Field(8, ge=1, description="Samples per problem; Pass@1 is their mean correctness (paper's validation: 8).")
    temperature: float = Field(0.6, ge=0, description="Sampling temperature for evaluation (paper: 0.6).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling for evaluation (paper: 0.95).")
    max_new_tokens: int | None = Field(None, ge=1, description="Response budget for evaluation; default: max_response_length.")
    limit: int | None = Field(None, ge=1, description="Only the first LIMIT problems of each benchmark.")
    batch_size: int = Field(64, ge=1, description="Samples decoded together during evaluation.")
    best_by: str | None = Field(None, description="Benchmark whose Pass@1 picks the checkpoint kept as OUTPUT_DIR/best "
                                "(the paper picks by AIME24), or 'average' (the mean over the benchmarks, the paper's "
                                "Avg.); default: the first benchmark.")

    @property
    def best_benchmark(self) -> str | None:
        return self.best_by or (self.benchmarks[0] if self.benchmarks else None)


class RLConfig(StageConfig):
    """Everything one GRPO run needs; unknown keys are errors."""

    # what is trained, on what
    model: str = Field(description="Policy to start from (and KL reference): directory, hub id, .gguf or alias.",
                       json_schema_extra=cli("-m"))
    output_dir: Path = Field(description="Run directory: checkpoints, rl_metrics.jsonl, eval/, best/ and the final model.",
                             json_schema_extra=cli("-o"))
    prompts: str = Field(description="RL prompts with gold answers: a dataset name (deepscaler, synth-rl, ...), a "
                         "record file (query/answer fields), a verl-format parquet or a synthetic world directory.",
                         json_schema_extra=cli(positional=True))
    limit: int | None = Field(None, ge=1, description="Use only the first LIMIT prompts.")
    data_dir: Path | None = Field(None, description="Where named datasets are looked for (default: $OXA_DATA_DIR).")
    fields: Fields = Field(default_factory=Fields, description="Field names of the prompt records.")
    prompt: PromptFormat = Field(default_factory=PromptFormat, description="How a query becomes the prompt (the same "
                                 "tokens as scoring, training, generation and evaluation).")
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig, description="Keep only the prompts the "
                                       "starting model solves sometimes (oxa.rl.prefilter); off by default.")
    max_prompt_length: int = Field(1536, ge=1, description="Prompts longer than this many tokens are dropped and "
                                   "counted (verl's filter_overlong_prompts; paper: 1,536).")
    max_response_length: int = Field(16384, ge=1, description="Rollout token budget; longer rollouts are cut "
                                     "(paper: 16,384; 18,432 for the 1.5B OXA_Full run).")

    # rollouts
    num_generations: int = Field(8, ge=2, description="Group size n: rollouts per prompt (paper: 8).",
                                 json_schema_extra=cli(section="Rollouts"))
    temperature: float = Field(0.85, gt=0, description="Rollout sampling temperature; log-probabilities and the "
                               "logged entropy use it too (paper: 0.85).")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus sampling (verl's default: 1.0, off).")
    prompts_per_step: int = Field(64, ge=1, description="Prompts per rollout batch (verl's train_batch_size; paper: 64).")
    updates_per_rollout_batch: int = Field(1, ge=1, description="Optimizer steps per rollout batch: the batch is "
                                           "split into this many mini-batches (paper: 1, so the PPO ratio stays 1).")
    micro_batch_size: int = Field(8, ge=1, description="Rollouts per forward/backward pass per process (memory only).")
    rollout_backend: Literal["oxa", "trl", "vllm"] = Field(
        "oxa", description="oxa: oxa's batched sampler (per-sample seeds, shared prompt prefill, finished rollouts "
        "leave the batch); trl: TRL's transformers generate; vllm: TRL's vLLM path (CUDA, vLLM installed).")
    rollout_batch_size: int = Field(64, ge=1, description="Rollouts decoded together per process (oxa backend).")
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="vLLM in the training processes "
                                                     "(colocate) or a `trl vllm-serve` server (rollout_backend vllm).")

    # the objective
    policy_loss: PolicyLossName = Field("vanilla", description="vanilla (PPO clip, verl's dual clip) | clip-cov | "
                                        "kl-cov (Cui et al. 2025).", json_schema_extra=cli(section="Objective"))
    clip_ratio_low: float = Field(0.2, ge=0, description="PPO clip: the ratio's lower bound is 1 - this.")
    clip_ratio_high: float = Field(0.2, ge=0, description="PPO clip: the ratio's upper bound is 1 + this.")
    clip_ratio_c: float | None = Field(3.0, gt=1, description="Dual clip of negative-advantage tokens at -A * c "
                                       "(vanilla only; verl's default 3); null: off.")
    clip_cov_ratio: float = Field(2e-4, gt=0, le=1, description="Clip-Cov: share of tokens whose gradient is dropped.")
    clip_cov_lb: float = Field(1.0, description="Clip-Cov: candidates have covariance above this.")
    clip_cov_ub: float = Field(5.0, description="Clip-Cov: candidates have covariance below this.")
    kl_cov_ratio: float = Field(2e-3, gt=0, le=1, description="KL-Cov: share of tokens (largest covariance) penalised "
                                "(2e-3 in the 7B recipes).")
    kl_cov_coef: float = Field(1.0, ge=0, description="KL-Cov: weight of |logp - logp_old| on those tokens (paper: 1; "
                               "verl's default 0.1).")
    kl_coef: float = Field(0.001, ge=0, description="Weight of the low-variance (k3) KL to the starting model in the "
                           "loss (paper: 0.001); 0 drops the reference model.")
    entropy_coef: float = Field(0.0, description="Entropy bonus weight (paper: 0).")
    loss_aggregation: LossAggregation = Field("token-mean", description="How per-token losses become one number "
                                              "(token-mean: verl's default, TRL's dapo).")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Divide advantages by the group's "
                                                             "reward std (GRPO, paper), the batch's, or not (Dr. GRPO).")
    mask_truncated_completions: bool = Field(False, description="Exclude rollouts cut at max_response_length from the loss.")
    off_policy_tokens: OffPolicyMode = Field("shape", description="Tokens a rollout transform marks off-policy: shape "
                                             "(LUFFY: -A p/(p+gamma)) or mask (no loss).")
    off_policy_gamma: float = Field(0.1, gt=0, description="gamma of LUFFY's shaping f(p) = p / (p + gamma).")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="The verifiable reward (oxa.rl.reward).")
    scope: ScopeConfig = Field(default_factory=ScopeConfig, description="SCOPE: salvage failed rollouts at their first "
                               "wrong step; group diversity logging (oxa.rl.salvage).")

    # the optimizer and the run
    learning_rate: float = Field(2e-6, gt=0, description="Actor learning rate (paper: 2e-6).",
                                 json_schema_extra=cli("--lr", section="Optimizer and run"))
    lr_scheduler_type: str = Field("constant", description="transformers scheduler name (verl: constant).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (verl's default 0.01).")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient norm clipping (paper: 1.0); 0: none.")
    num_train_epochs: float = Field(1.0, gt=0, description="Passes over the prompts (when max_steps is not set).",
                                    json_schema_extra=cli("--epochs"))
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    seed: int = Field(0, description="Seeds the prompt order, the rollouts and Clip-Cov's draws.")
    bf16: bool = Field(False, description="bf16 mixed precision (GPU).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    logging_steps: int = Field(1, ge=1, description="Log (report_to and rl_metrics.jsonl) every N optimizer steps.")
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="tensorboard, wandb, ... (as transformers).")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N optimizer steps (needed to resume).")
    save_total_limit: int | None = Field(None, ge=1, description="Keep at most this many checkpoints.")
    resume_from_checkpoint: str | None = Field(None, description="A checkpoint directory, or 'latest': the newest in "
                                               "output_dir (the same next prompts as the interrupted run).",
                                               json_schema_extra=cli("--resume"))
    deepspeed: Path | None = Field(None, description="DeepSpeed JSON config (configs/deepspeed/zero2.json).")
    eval: RLEvalConfig = Field(default_factory=RLEvalConfig, description="Periodic held-out evaluation and best/.")
    trl_args: dict[str, Any] = Field(default_factory=dict, description="Further trl.GRPOConfig settings passed "
                                     "through unchanged (vllm_server_host, vllm_gpu_memory_utilization, ...).")

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.prompts_per_step % self.updates_per_rollout_batch:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be divisible by "
                             f"updates_per_rollout_batch ({self.updates_per_rollout_batch})")
        if self.eval.best_by not in (None, "average", *self.eval.benchmarks):
            raise ValueError(f"eval.best_by {self.eval.best_by!r} is neither 'average' nor one of eval.benchmarks "
                             f"{self.eval.benchmarks}")
        if self.scope.enabled and self.rollout_backend == "vllm":
            raise ValueError("scope.enabled needs rollout_backend oxa or trl (vLLM's sampling log-probabilities would "
                             "not match salvaged rollouts)")
        return self
