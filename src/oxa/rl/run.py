"""`train_rl(cfg)`: read the prompts, set up TRL for the paper's batch geometry, run GRPO, save the policy."""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path

from oxa.distributed import dist_info
from oxa.errors import OxaError
from oxa.io import write_json
from oxa.models import load_tokenizer, resolve
from oxa.prompting import encode_prompt
from oxa.records import get_text, record_id
from oxa.rl.config import RLConfig
from oxa.rl.metrics import MetricsFile
from oxa.rl.rollout import RolloutTransform


def load_rl_prompts(cfg: RLConfig, *, log=print) -> list[dict]:
    """The prompt records of ``cfg.prompts`` (id, bare query, answer), prefiltered if ``cfg.prefilter`` says so."""
    from oxa.rl.prefilter import prefilter_prompts
    from oxa.rl.prompts import load_prompts

    records = load_prompts(cfg.prompts, fields=cfg.fields, limit=cfg.limit, data_dir=cfg.data_dir)
    if not records:
        raise OxaError(f"{cfg.prompts}: no prompts")
    return prefilter_prompts(records, cfg, log=log) if cfg.prefilter.enabled else records


def prompt_rows(records: list[dict], tokenizer, cfg: RLConfig) -> tuple[list[dict], int]:
    """TRL dataset rows (``prompt`` = the bare query, ``answer``, ``id``) of the prompts that fit in
    ``max_prompt_length`` tokens, and how many were dropped for length."""
    rows, dropped = [], 0
    for i, r in enumerate(records):
        query = get_text(r, "query", where=f"{cfg.prompts}: record {i + 1}")
        if len(encode_prompt(tokenizer, query, cfg.prompt)) > cfg.max_prompt_length:
            dropped += 1
            continue
        rows.append({"prompt": query, "answer": r["answer"], "id": record_id(r, cfg.fields, i)})
    if any(isinstance(r["answer"], list) for r in rows):  # Arrow needs one type per column; a list means "any of"
        rows = [{**r, "answer": r["answer"] if isinstance(r["answer"], list) else [r["answer"]]} for r in rows]
    return rows, dropped


def batch_geometry(cfg: RLConfig, world: int) -> dict[str, int]:
    """Micro-batches per optimizer step (gradient accumulation) and per rollout batch, or an error naming
    the settings that do not divide."""
    rollouts = cfg.prompts_per_step * cfg.num_generations
    if cfg.prompts_per_step % world:
        raise OxaError(f"prompts_per_step ({cfg.prompts_per_step}) must be divisible by the number of processes "
                       f"({world}), so that every process holds whole groups")
    per_update = rollouts // cfg.updates_per_rollout_batch // world
    if per_update % cfg.micro_batch_size:
        raise OxaError(f"each process trains {per_update} rollouts per optimizer step (prompts_per_step x "
                       f"num_generations / updates_per_rollout_batch / processes), not a multiple of "
                       f"micro_batch_size ({cfg.micro_batch_size})")
    accumulation = per_update // cfg.micro_batch_size
    return {"gradient_accumulation_steps": accumulation,
            "steps_per_generation": accumulation * cfg.updates_per_rollout_batch}


def check_backends(cfg: RLConfig) -> None:
    """Refuse, in one line, settings this machine cannot run."""
    if cfg.rollout_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise OxaError("rollout_backend vllm needs vLLM (pip install vllm, on a CUDA machine); "
                       "or use rollout_backend oxa")
    if cfg.deepspeed is not None and importlib.util.find_spec("deepspeed") is None:
        raise OxaError(f"deepspeed: {cfg.deepspeed} needs DeepSpeed (pip install deepspeed)")
    if cfg.deepspeed is not None and not Path(cfg.deepspeed).is_file():
        raise OxaError(f"deepspeed: {cfg.deepspeed}: no such file")
    if cfg.save_steps is not None and cfg.save_steps % cfg.updates_per_rollout_batch:
        raise OxaError(f"save_steps ({cfg.save_steps}) must be a multiple of updates_per_rollout_batch "
                       f"({cfg.updates_per_rollout_batch}): a checkpoint inside a rollout batch cannot resume it")


def grpo_args(cfg: RLConfig, world: int):
    """The ``trl.GRPOConfig`` of ``cfg`` (``cfg.trl_args`` override or extend it)."""
    import torch
    from trl import GRPOConfig

    unknown = sorted(set(cfg.trl_args) - {f.name for f in dataclasses.fields(GRPOConfig)})
    if unknown:
        raise OxaError(f"trl_args: trl.GRPOConfig has no setting {', '.join(map(repr, unknown))}")
    return GRPOConfig(
        output_dir=str(cfg.output_dir),
        per_device_train_batch_size=cfg.micro_batch_size,
        **batch_geometry(cfg, world),
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_response_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.kl_coef,
        epsilon=cfg.clip_ratio_low,
        epsilon_high=cfg.clip_ratio_high,
        scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a value below 1 is a fraction of the steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps or -1,
        seed=cfg.seed,
        bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        report_to=cfg.report_to,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit,
        deepspeed=str(cfg.deepspeed) if cfg.deepspeed else None,
        use_vllm=cfg.rollout_backend == "vllm",
        vllm_mode=cfg.vllm_mode,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
        disable_dropout=True,
        **{"ddp_find_unused_parameters": False, **cfg.trl_args},
    )


def scope_transform(cfg: RLConfig, records: list[dict]):
    """SCOPE's rollout transform (:mod:`oxa.rl.salvage`) over ``records`` keyed by their ids."""
    from oxa.rl.salvage import ScopeTransform

    transform = ScopeTransform(cfg.scope, {record_id(r, cfg.fields, i): r for i, r in enumerate(records)},
                               cfg.output_dir)
    transform.check_records(records, str(cfg.prompts))
    return transform


def train_rl(cfg: RLConfig, *, reward_funcs=None, rollout_transform: RolloutTransform | None = None,
             callbacks: list | None = None, log=print) -> Path:
    """Run GRPO as ``cfg`` says; returns ``cfg.output_dir``, which holds the final policy (and best/ with
    evaluation). ``reward_funcs`` replace the default verifiable reward (any TRL reward functions);
    ``rollout_transform`` rewrites graded rollouts before advantages (SCOPE, :mod:`oxa.rl.rollout`)."""
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint

    from oxa.rl.periodic_eval import PeriodicEval
    from oxa.rl.reward import MathReward
    from oxa.rl.trainer import OxaGRPOTrainer

    if reward_funcs is None:  # the paper's reward; its grading processes stop when the run ends
        with MathReward(cfg.reward) as reward:
            return train_rl(cfg, reward_funcs=[reward], rollout_transform=rollout_transform, callbacks=callbacks,
                            log=log)
    check_backends(cfg)
    rank, world = dist_info()
    say = log if rank == 0 else (lambda *_: None)
    tokenizer = load_tokenizer(cfg.model, padding_side="left")
    records = load_rl_prompts(cfg, log=say)
    rows, dropped = prompt_rows(records, tokenizer, cfg)
    if not rows:
        raise OxaError(f"{cfg.prompts}: every prompt is longer than max_prompt_length ({cfg.max_prompt_length} tokens)")
    args = grpo_args(cfg, world)
    if rollout_transform is None and cfg.scope.active:
        rollout_transform = scope_transform(cfg, records)
    say(f"GRPO on {len(rows)} prompts ({dropped} dropped as longer than {cfg.max_prompt_length} tokens): "
        f"{cfg.prompts_per_step} prompts x {cfg.num_generations} rollouts per batch, "
        f"{cfg.updates_per_rollout_batch} optimizer step(s) per batch, {world} process(es) x "
        f"{args.gradient_accumulation_steps} micro-batches of {cfg.micro_batch_size}")
    trainer = OxaGRPOTrainer(
        model=resolve(cfg.model), reward_funcs=reward_funcs,
        args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=callbacks,
        rl=cfg, rollout_transform=rollout_transform)
    if cfg.eval.benchmarks:
        trainer.add_callback(PeriodicEval(trainer, cfg))
    resume = cfg.resume_from_checkpoint
    if resume == "latest":
        resume = get_last_checkpoint(str(cfg.output_dir)) if Path(cfg.output_dir).exists() else None
        say(f"resuming from {resume}" if resume else "no checkpoint to resume from: starting fresh")
    if trainer.accelerator.is_main_process:  # rows after the resumed step are logged again; a fresh run starts empty
        trainer.metrics_file.truncate_after(int(Path(resume).name.rsplit("-", 1)[-1]) if resume else -1)
        MetricsFile(Path(cfg.output_dir) / "salvage.jsonl").truncate_after(
            int(Path(resume).name.rsplit("-", 1)[-1]) if resume else -1)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(cfg.output_dir))
    if trainer.is_world_process_zero():
        write_json(Path(cfg.output_dir) / "oxa_rl.json", {
            "prompts": len(rows), "dropped_long_prompts": dropped, "global_steps": result.global_step,
            "seconds": time.time() - started, "metrics": result.metrics, "config": cfg.model_dump(mode="json"),
        })
    trainer.accelerator.wait_for_everyone()  # every process returns once the saved policy exists
    return Path(cfg.output_dir)
