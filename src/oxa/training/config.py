"""Settings of `oxa train`: one pydantic model, read from YAML (the paper presets live in configs/paper/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from oxa.config import StageConfig
from oxa.losses import GeneralizedCE
from oxa.prompting import PromptFormat
from oxa.records import Fields

Method = Literal["sft", "oxa-mle", "oxa-full", "dp-ce"]
METHODS = get_args(Method)
"""sft / oxa-mle: CE only (they differ in the data you select); oxa-full: CE + alpha * UL;
dp-ce: generalized CE of "Diversity or Precision" on the CE set."""


class GeneralizedCEConfig(StageConfig):
    beta: float = -0.25  # the paper's best (a precision prior); 0 with both lambdas 0 is plain CE
    lambda_top: float = 0.0
    lambda_tail: float = -0.1
    top_k: int = Field(100, ge=1)

    def loss(self) -> GeneralizedCE:
        return GeneralizedCE(self.beta, self.lambda_top, self.lambda_tail, self.top_k)


class TrainConfig(StageConfig):
    """Everything one fine-tuning run needs; unknown keys are errors."""

    model: str
    output_dir: Path
    method: Method = "oxa-full"

    # data: separate CE / UL files, or one file whose `loss_type_field` says "ce" or "ul" per record
    ce_data: Path | None = None
    ul_data: Path | None = None
    data: Path | None = None
    loss_type_field: str = "loss_type"
    fields: Fields = Fields()
    prompt: PromptFormat = PromptFormat()
    skip_bad: bool = False
    cutoff_len: int = Field(32768, ge=2)
    cutoff_policy: Literal["drop", "truncate"] = "drop"  # the reference drops longer examples

    # the objective
    alpha: float = Field(1e-4, ge=0)
    normalization: Literal["sequence", "token"] = "sequence"  # paper: per-sequence token mean
    gce: GeneralizedCEConfig = GeneralizedCEConfig()
    loss_chunk_size: int | None = Field(None, ge=1)  # tokens per logits chunk; default ~16M logits

    # the batch: sequences per optimizer step, split over processes and micro-batches by the composer
    ce_per_step: int = Field(128, ge=1)
    ul_per_step: int = Field(128, ge=1)
    micro_batch_size: int = Field(1, ge=1)

    # the model (loaded in fp32; bf16 is mixed precision, or DeepSpeed's bf16 with fp32 master weights)
    bf16: bool = False
    model_overrides: dict[str, Any] = {}  # config changes before training, e.g. rope_theta, max_position_embeddings
    chat_template: str | None = None  # replaces the tokenizer's template (the paper removes the system prompt)
    gradient_checkpointing: bool = False

    # the optimizer and the run (TrainingArguments names)
    learning_rate: float = Field(1e-5, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    seed: int = 42
    logging_steps: int = Field(1, ge=1)
    save_steps: int | None = None  # checkpoint every N optimizer steps (None: no intermediate checkpoints)
    save_total_limit: int | None = None
    report_to: list[str] = ["none"]  # tensorboard, wandb, ...
    resume_from_checkpoint: str | None = None  # a checkpoint dir, or "latest" for the newest in output_dir
    deepspeed: Path | None = None
    fsdp: Path | None = Field(None, description="FSDP settings (a TrainingArguments fsdp_config JSON such as "
                              "configs/fsdp/fsdp2.json): shard the run with FSDP; launch it with torchrun")
    trainer_args: dict[str, Any] = {}  # any further transformers.TrainingArguments (optim, tf32, ...)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.data is None and self.ce_data is None and self.ul_data is None:
            raise ValueError("give training data: ce_data (and ul_data for oxa-full), or data with a loss_type field")
        if self.method != "oxa-full" and self.data is None and self.ce_data is None:
            raise ValueError(f"method {self.method} trains on CE data: give ce_data (or data)")
        if self.deepspeed and self.fsdp:
            raise ValueError("deepspeed and fsdp are two ways to shard the same run: give one of them")
        for key, setting in (("deepspeed", "deepspeed"), ("fsdp", "fsdp"), ("fsdp_config", "fsdp")):
            if key in self.trainer_args:
                raise ValueError(f"trainer_args.{key}: use the setting `{setting}` instead")
        return self

    @property
    def uses_ul(self) -> bool:
        return self.method == "oxa-full"

    def generalized_ce(self) -> GeneralizedCE | None:
        return self.gce.loss() if self.method == "dp-ce" else None
