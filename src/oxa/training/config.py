"""Settings of `oxa train`: one pydantic model, read from YAML (the paper presets live in configs/paper/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from oxa.config import StageConfig, cli
from oxa.losses import GeneralizedCE
from oxa.prompting import PromptFormat
from oxa.records import Fields
from oxa.training.composer import LastStep

Method = Literal["sft", "oxa-mle", "oxa-full", "dp-ce"]
METHODS = get_args(Method)
"""sft / oxa-mle: CE only (they differ in the data you select); oxa-full: CE + alpha * UL;
dp-ce: generalized CE of "Diversity or Precision" on the CE set."""


class GeneralizedCEConfig(StageConfig):
    """The generalized CE of "Diversity or Precision", trained by method dp-ce (all three 0 is plain CE)."""

    beta: float = Field(-0.25, description="the paper's best: a precision prior")
    lambda_top: float = Field(0.0, description="weight of the top-k term")
    lambda_tail: float = Field(-0.1, description="weight of the tail (outside the top k) term")
    top_k: int = Field(100, ge=1, description="size of the top set")

    def loss(self) -> GeneralizedCE:
        return GeneralizedCE(self.beta, self.lambda_top, self.lambda_tail, self.top_k)


class TrainConfig(StageConfig):
    """Everything one fine-tuning run needs; unknown keys are errors."""

    model: str = Field(description="model to fine-tune: directory, hub id, .gguf file or alias",
                       json_schema_extra=cli("-m"))
    output_dir: Path = Field(description="where checkpoints and the final model go", json_schema_extra=cli("-o"))
    method: Method = Field("oxa-full", description="the objective: CE only (sft, oxa-mle: they differ in the data), "
                                                   "CE + alpha * UL (oxa-full) or the generalized CE (dp-ce)")

    # data: separate CE / UL files, or one file whose `loss_type_field` says "ce" or "ul" per record
    ce_data: Path | None = Field(None, description="records trained with cross-entropy (promoted)",
                                 json_schema_extra=cli(section="Data"))
    ul_data: Path | None = Field(None, description="records trained with unlikelihood (suppressed; oxa-full)")
    data: Path | None = Field(None, description="one file whose loss_type field is 'ce' or 'ul' per record")
    loss_type_field: str = Field("loss_type", description="the field of --data records that says 'ce' or 'ul'")
    fields: Fields = Fields()
    prompt: PromptFormat = PromptFormat()
    skip_bad: bool = Field(False, description="skip malformed lines and records lacking fields, and count them")
    cutoff_len: int = Field(32768, ge=2, description="longest example in tokens (paper: 32768)")
    cutoff_policy: Literal["drop", "truncate"] = Field("drop", description="what happens to longer examples "
                                                                           "(the reference drops them)")

    # the objective
    alpha: float = Field(1e-4, ge=0, description="weight of the unlikelihood loss (paper: 1e-4)",
                         json_schema_extra=cli(section="Objective"))
    normalization: Literal["sequence", "token"] = Field(
        "sequence", description="each loss as the mean over sequences of their token means (paper), or over all "
                                "tokens")
    gce: GeneralizedCEConfig = GeneralizedCEConfig()
    loss_chunk_size: int | None = Field(None, ge=1, description="tokens per logits chunk; default ~16M logits")

    # the batch: sequences per optimizer step, split over processes and micro-batches by the composer
    ce_per_step: int = Field(128, ge=1, description="CE sequences per optimizer step (paper: 128)",
                             json_schema_extra=cli(section="Batch"))
    ul_per_step: int = Field(128, ge=1, description="UL sequences per optimizer step (paper: 128)")
    micro_batch_size: int = Field(1, ge=1, description="rows per process per forward pass")
    last_step: LastStep = Field("scale", description=(
        "an epoch's incomplete last step (e.g. 2 CE rows left at 128 per step): 'scale' trains it as a "
        "scaled-down step, its rows weighted as in a full step and UL rows in the same proportion; 'drop' "
        "skips it, as drop_last does"))

    # the model (loaded in fp32; bf16 is mixed precision, or DeepSpeed's bf16 with fp32 master weights)
    bf16: bool = Field(False, description="mixed precision in bf16", json_schema_extra=cli(section="Model"))
    model_overrides: dict[str, Any] = Field(
        {}, description="config changes before training, e.g. {rope_theta: 1.0e6, max_position_embeddings: 40000}")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less memory)")

    # the optimizer and the run (TrainingArguments names)
    learning_rate: float = Field(1e-5, gt=0, description="peak learning rate",
                                 json_schema_extra=cli("--lr", section="Optimizer and run"))
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the CE set", json_schema_extra=cli("--epochs"))
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: the epochs decide)")
    lr_scheduler_type: str = Field("cosine", description="learning-rate schedule (a transformers scheduler name)")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.0, description="AdamW weight decay")
    adam_beta1: float = Field(0.9, description="AdamW's beta1")
    adam_beta2: float = Field(0.999, description="AdamW's beta2")
    max_grad_norm: float = Field(1.0, description="gradient clipping norm")
    seed: int = Field(42, description="seeds the model init, the batch order and dropout")
    logging_steps: int = Field(1, ge=1, description="log every N optimizer steps")
    save_steps: int | None = Field(None, description="checkpoint every N optimizer steps (default: no intermediate "
                                                     "checkpoints)")
    save_total_limit: int | None = Field(None, description="keep at most this many checkpoints")
    report_to: list[str] = Field(["none"], description="where to log: tensorboard, wandb, ... (repeatable)")
    resume_from_checkpoint: str | None = Field(None, description="a checkpoint directory, or 'latest' for the newest "
                                                                 "in output_dir", json_schema_extra=cli("--resume"))
    deepspeed: Path | None = Field(None, description="DeepSpeed JSON config (configs/deepspeed/zero2.json, zero3.json)")
    fsdp: Path | None = Field(None, description="FSDP settings (a TrainingArguments fsdp_config JSON such as "
                              "configs/fsdp/fsdp2.json): shard the run with FSDP; launch it with torchrun")
    trainer_args: dict[str, Any] = Field({}, description="any further transformers.TrainingArguments (optim, tf32, ...)")

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
