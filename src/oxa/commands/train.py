"""`oxa train`: fine-tune with SFT, OXA (CE + alpha * UL) or the generalized CE; or export the training sets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field

from oxa.commands.common import console
from oxa.commands.flags import stage_command
from oxa.config import cli


class ExportOptions(BaseModel):
    """Instead of training, write the training sets for another trainer."""

    model_config = ConfigDict(extra="forbid")

    export: Optional[Literal["llamafactory", "trl"]] = Field(
        None, description="only export the training sets, in this format, and do not train",
        json_schema_extra=cli(section="Export"))
    export_path: Optional[Path] = Field(
        None, description="file for --export (default: OUTPUT_DIR/train_<format>.json or .jsonl)")


def register(app: typer.Typer) -> None:
    @stage_command(app, "train", "oxa.training:TrainConfig", options=ExportOptions)
    def train(cfg, options: ExportOptions) -> None:
        """Fine-tune a model on CE records (and UL records for oxa-full) with L = L_CE + alpha * L_UL.

        Run it under `torchrun` / `accelerate launch` for several processes; the CE:UL counts per optimizer
        step stay what you set, whatever the number of processes.
        """
        if options.export:
            _export(cfg, options.export, options.export_path)
            return
        from oxa.training import train as run_training

        out = run_training(cfg, log=console.print)
        console.print(f"saved the fine-tuned model to {out}")


def _export(cfg, kind: str, path: Path | None) -> None:
    from oxa.training.data import read_split
    from oxa.training.export import export

    ce, ul = read_split(ce_data=cfg.ce_data, ul_data=cfg.ul_data, data=cfg.data,
                        loss_type_field=cfg.loss_type_field, skip_bad=cfg.skip_bad)
    if not cfg.uses_ul:
        ul = []
    path = path or cfg.output_dir / f"train_{kind}.{'json' if kind == 'llamafactory' else 'jsonl'}"
    n = export(kind, ce, ul, path, fields=cfg.fields, fmt=cfg.prompt)
    console.print(f"wrote {n} examples ({len(ce)} ce, {len(ul)} ul) to {path}")
