"""`oxa train`: fine-tune with SFT, OXA (CE + alpha * UL) or the generalized CE; or export the training sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import (AnswerFieldOpt, ConfigOpt, IdFieldOpt, QueryFieldOpt, ResponseFieldOpt, SkipBadOpt,
                                 console, field_flags)
from oxa.config import resolve


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model to fine-tune: directory, hub id, .gguf or alias.")] = None,
        output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Where checkpoints and the final model go.")] = None,
        method: Annotated[Optional[str], typer.Option("--method", help="sft | oxa-mle | oxa-full | dp-ce.")] = None,
        ce_data: Annotated[Optional[Path], typer.Option("--ce-data", help="Records trained with cross-entropy (promoted).")] = None,
        ul_data: Annotated[Optional[Path], typer.Option("--ul-data", help="Records trained with unlikelihood (suppressed; oxa-full).")] = None,
        data: Annotated[Optional[Path], typer.Option("--data", help="One file whose loss_type field is 'ce' or 'ul' per record.")] = None,
        alpha: Annotated[Optional[float], typer.Option("--alpha", help="Weight of the unlikelihood loss (paper: 1e-4).")] = None,
        normalization: Annotated[Optional[str], typer.Option("--normalization", help="sequence (paper: per-sequence token mean) | token.")] = None,
        ce_per_step: Annotated[Optional[int], typer.Option("--ce-per-step", help="CE sequences per optimizer step (paper: 128).")] = None,
        ul_per_step: Annotated[Optional[int], typer.Option("--ul-per-step", help="UL sequences per optimizer step (paper: 128).")] = None,
        micro_batch_size: Annotated[Optional[int], typer.Option("--micro-batch-size", help="Rows per process per forward pass.")] = None,
        cutoff_len: Annotated[Optional[int], typer.Option("--cutoff-len", help="Longest example in tokens (paper: 32768).")] = None,
        cutoff_policy: Annotated[Optional[str], typer.Option("--cutoff-policy", help="drop (paper) | truncate longer examples.")] = None,
        learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help="Peak learning rate.")] = None,
        num_train_epochs: Annotated[Optional[float], typer.Option("--epochs", help="Passes over the CE set.")] = None,
        max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimizer steps.")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Seeds the model init, the batch order and dropout.")] = None,
        save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Checkpoint every N optimizer steps.")] = None,
        report_to: Annotated[Optional[list[str]], typer.Option("--report-to", help="tensorboard, wandb, ... (repeatable).")] = None,
        resume_from_checkpoint: Annotated[Optional[str], typer.Option("--resume", help="A checkpoint directory, or 'latest'.")] = None,
        deepspeed: Annotated[Optional[Path], typer.Option("--deepspeed", help="DeepSpeed JSON config (configs/deepspeed/zero2.json).")] = None,
        bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 mixed precision.")] = None,
        export: Annotated[Optional[str], typer.Option("--export", help="Only export the training sets: llamafactory | trl.")] = None,
        export_path: Annotated[Optional[Path], typer.Option("--export-path", help="File for --export (default: OUTPUT_DIR/train_<format>.json[l]).")] = None,
        config: ConfigOpt = None,
        skip_bad: SkipBadOpt = False,
        fields_id: IdFieldOpt = "id",
        fields_query: QueryFieldOpt = "query",
        fields_response: ResponseFieldOpt = "response",
        fields_answer: AnswerFieldOpt = "answer",
    ) -> None:
        """Fine-tune a model on CE records (and UL records for oxa-full) with L = L_CE + alpha * L_UL.

        Run it under `torchrun` / `accelerate launch` for several processes; the CE:UL counts per optimizer
        step stay what you set, whatever the number of processes.
        """
        from oxa.training import TrainConfig
        from oxa.training import train as run_training

        flags = {"model": model, "output_dir": output_dir, "method": method, "ce_data": ce_data, "ul_data": ul_data,
                 "data": data, "alpha": alpha, "normalization": normalization, "ce_per_step": ce_per_step,
                 "ul_per_step": ul_per_step, "micro_batch_size": micro_batch_size, "cutoff_len": cutoff_len,
                 "cutoff_policy": cutoff_policy, "learning_rate": learning_rate, "num_train_epochs": num_train_epochs,
                 "max_steps": max_steps, "seed": seed, "save_steps": save_steps, "report_to": report_to or None,
                 "resume_from_checkpoint": resume_from_checkpoint, "deepspeed": deepspeed, "bf16": bf16,
                 "skip_bad": skip_bad, **field_flags(fields_id, fields_query, fields_response, fields_answer)}
        cfg = resolve(TrainConfig, config, flags)
        if export:
            _export(cfg, export, export_path)
            return
        out = run_training(cfg, log=console.print)
        console.print(f"saved the fine-tuned model to {out}")


def _export(cfg, kind: str, path: Path | None) -> None:
    from oxa.errors import OxaError
    from oxa.training.data import read_split
    from oxa.training.export import FORMATS, export

    if kind not in FORMATS:
        raise OxaError(f"--export must be one of {', '.join(FORMATS)}, got {kind!r}")
    ce, ul = read_split(ce_data=cfg.ce_data, ul_data=cfg.ul_data, data=cfg.data,
                        loss_type_field=cfg.loss_type_field, skip_bad=cfg.skip_bad)
    if not cfg.uses_ul:
        ul = []
    path = path or cfg.output_dir / f"train_{kind}.{'json' if kind == 'llamafactory' else 'jsonl'}"
    n = export(kind, ce, ul, path, fields=cfg.fields, fmt=cfg.prompt)
    console.print(f"wrote {n} examples ({len(ce)} ce, {len(ul)} ul) to {path}")
