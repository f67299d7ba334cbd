"""`train(config)`: read and tokenise the data, compose the batches, run the OXA trainer, save the model."""

from __future__ import annotations

import time
from pathlib import Path

from oxa.distributed import dist_info
from oxa.errors import OxaError
from oxa.io import ReadStats, write_json
from oxa.models import load_tokenizer, resolve
from oxa.training.composer import BatchComposer
from oxa.training.config import TrainConfig
from oxa.training.data import Collator, ComposedDataset, encode_records, read_split


def load_training_model(config: TrainConfig):
    """The model to fine-tune, with ``model_overrides`` applied to its config before the weights load."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve(config.model)
    model_config = AutoConfig.from_pretrained(path)
    for key, value in config.model_overrides.items():
        rope = getattr(model_config, "rope_parameters", None)
        if key == "rope_theta" and isinstance(rope, dict):
            rope["rope_theta"] = value  # transformers 5 keeps RoPE settings in rope_parameters
        elif hasattr(model_config, key):
            setattr(model_config, key, value)
        else:
            raise OxaError(f"model_overrides: {type(model_config).__name__} has no setting {key!r}")
    model = AutoModelForCausalLM.from_pretrained(path, config=model_config, dtype=torch.float32)
    if config.gradient_checkpointing:
        model.config.use_cache = False
    return model


def prepare_data(config: TrainConfig, tokenizer, *, log=print):
    """Tokenised CE and UL examples (UL only for oxa-full) and a summary of what was read, cut and dropped."""
    read_stats = ReadStats()
    ce_records, ul_records = read_split(
        ce_data=config.ce_data, ul_data=config.ul_data, data=config.data, loss_type_field=config.loss_type_field,
        skip_bad=config.skip_bad, stats=read_stats,
    )
    if ul_records and not config.uses_ul:
        log(f"method {config.method} has no unlikelihood term: ignoring {len(ul_records)} UL records")
        ul_records = []
    if config.uses_ul and not ul_records:
        log("method oxa-full without UL records: training is CE only")
    common = dict(fmt=config.prompt, fields=config.fields, cutoff_len=config.cutoff_len,
                  policy=config.cutoff_policy, skip_bad=config.skip_bad)
    ce, ce_stats = encode_records(ce_records, tokenizer, source=str(config.ce_data or config.data), **common)
    ul, ul_stats = encode_records(ul_records, tokenizer, source=str(config.ul_data or config.data), **common)
    if not ce and not ul:
        raise OxaError("no training examples left after reading and the cutoff (see the counts above)")
    summary = {"read": read_stats.read, "skipped_bad_lines": read_stats.skipped, "ce": ce_stats.as_dict(),
               "ul": ul_stats.as_dict()}
    for kind, stats in (("CE", ce_stats), ("UL", ul_stats)):
        if stats.kept or stats.dropped_too_long or stats.skipped_bad:
            log(f"{kind}: {stats.kept} examples; {stats.truncated} truncated, {stats.dropped_too_long} dropped as "
                f"longer than {config.cutoff_len} tokens, {stats.dropped_no_response} with no response left, "
                f"{stats.skipped_bad} bad records skipped")
    return ce, ul, summary


def train(config: TrainConfig, *, log=print, callbacks: list | None = None) -> Path:
    """Fine-tune ``config.model`` with ``config.method``; returns the directory of the saved model.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (early stopping, custom logging).
    """
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from oxa.training.trainer import OxaTrainer

    rank, world = dist_info()
    say = log if rank == 0 else (lambda *_: None)
    tokenizer = load_tokenizer(config.model)
    if config.prompt.chat_template is not None:  # saved with the model, so later tools prompt it the same way
        tokenizer.chat_template = config.prompt.chat_template
    ce, ul, data_summary = prepare_data(config, tokenizer, log=say)
    composer = BatchComposer(
        [e.n_loss for e in ce], [e.n_loss for e in ul], ce_per_step=config.ce_per_step, ul_per_step=config.ul_per_step,
        world_size=world, micro_batch_size=config.micro_batch_size, seed=config.seed,
        per_sequence=config.normalization == "sequence", last_step=config.last_step,
    )
    say(f"{config.method}: {len(ce)} CE + {len(ul)} UL examples; per optimizer step {composer.ce_per_step} CE + "
        f"{composer.ul_per_step} UL sequences = {world} process(es) x {composer.grad_accum} accumulation steps x "
        f"<= {config.micro_batch_size} rows; {composer.steps_per_epoch} steps per epoch")

    engine_args = dict(deepspeed=str(config.deepspeed) if config.deepspeed else None,
                       fsdp=True if config.fsdp else None, fsdp_config=str(config.fsdp) if config.fsdp else None)
    try:
        args = TrainingArguments(
            output_dir=str(config.output_dir),
            per_device_train_batch_size=config.micro_batch_size,
            gradient_accumulation_steps=composer.grad_accum,
            learning_rate=config.learning_rate,
            num_train_epochs=config.num_train_epochs,
            max_steps=config.max_steps,
            lr_scheduler_type=config.lr_scheduler_type,
            warmup_steps=config.warmup_ratio,  # a value below 1 is a fraction of the steps
            weight_decay=config.weight_decay,
            adam_beta1=config.adam_beta1,
            adam_beta2=config.adam_beta2,
            max_grad_norm=config.max_grad_norm,
            seed=config.seed,
            logging_steps=config.logging_steps,
            save_strategy="steps" if config.save_steps else "no",
            save_steps=config.save_steps or 500,
            save_total_limit=config.save_total_limit,
            report_to=config.report_to,
            bf16=config.bf16,
            activation_checkpointing=config.gradient_checkpointing,
            dataloader_pin_memory=torch.cuda.is_available(),
            remove_unused_columns=False,
            **engine_args, **{"ddp_find_unused_parameters": False, **config.trainer_args},
        )
    except (ValueError, OSError, ImportError) as e:  # settings the Trainer refuses, a missing config file or engine
        raise OxaError(f"training settings refused: {str(e).strip().splitlines()[0]}") from e
    if args.n_gpu > 1:  # torch.nn.DataParallel: replicas of the output layer would share one batch of targets
        raise OxaError(f"{args.n_gpu} GPUs in one process are not supported: start one process per GPU with torchrun")
    model = load_training_model(config)
    trainer = OxaTrainer(
        model=model, args=args, train_dataset=ComposedDataset(ce, ul),
        data_collator=Collator(tokenizer.pad_token_id), processing_class=tokenizer,
        composer=composer, alpha=config.alpha if config.uses_ul else 0.0,
        per_sequence=config.normalization == "sequence", gce=config.generalized_ce(),
        loss_chunk_size=config.loss_chunk_size, callbacks=callbacks,
    )
    resume = config.resume_from_checkpoint
    if resume == "latest":
        resume = get_last_checkpoint(str(config.output_dir)) if config.output_dir.exists() else None
        say(f"resuming from {resume}" if resume else "no checkpoint to resume from: starting fresh")
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(config.output_dir))
    if trainer.is_world_process_zero():
        write_json(config.output_dir / "oxa_train.json", {
            "method": config.method, "data": data_summary, "global_steps": result.global_step,
            "composer": {"ce_per_step": composer.ce_per_step, "ul_per_step": composer.ul_per_step,
                         "world_size": world, "grad_accum": composer.grad_accum,
                         "micro_batch_size": config.micro_batch_size, "steps_per_epoch": composer.steps_per_epoch},
            "metrics": result.metrics, "log_history": trainer.state.log_history, "seconds": time.time() - start,
            "config": config.model_dump(mode="json"),
        })
    return Path(config.output_dir)
