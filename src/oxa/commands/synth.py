"""`oxa synth`: write the synthetic math world's data splits (and build its base model on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import Field
from rich.table import Table

from oxa.commands.common import console
from oxa.commands.flags import stage_command
from oxa.config import StageConfig, cli
from oxa.synth.basemodel import QUICK_BASE, BaseModelConfig, build_base_model
from oxa.synth.shipped import SHIPPED, ship, shipped_model, weight_difference
from oxa.synth.world import WorldConfig, register_benchmarks, write_world

register_benchmarks()  # `oxa evaluate --benchmark synth-hard` and friends work from any command


class SynthConfig(StageConfig):
    """Settings of ``oxa synth``: the world's sizes, and optionally the base model to build."""

    out: Path = Field(description="directory for teacher.jsonl, benchmark.jsonl, rl.jsonl and world.json",
                      json_schema_extra=cli(positional=True))
    world: WorldConfig = WorldConfig()
    base_model: bool = Field(False, description="also build (or reuse) the pre-trained base model")
    base: Optional[BaseModelConfig] = Field(None, description="the base model (these defaults, or smaller ones with "
                                                              "--quick unless any is set here)")
    quick: bool = Field(False, description="with --base-model: the small, fast base model used by tests")
    cache: Optional[Path] = Field(None, description="cache root for base models (default: $OXA_CACHE or ~/.cache/oxa)")
    shipped: bool = Field(True, description="with --base-model: start from the weights shipped with oxa when they were "
                                            "built from the same config (--no-shipped pre-trains)")
    ship_to: Optional[Path] = Field(None, description="with --base-model: copy the model there too (src/oxa/synth/base "
                                                      "is what oxa ships)")

    def base_config(self) -> BaseModelConfig:
        return self.base or (QUICK_BASE if self.quick else BaseModelConfig())


def register(app: typer.Typer) -> None:
    @stage_command(app, "synth", SynthConfig)
    def synth(cfg: SynthConfig) -> None:
        """Write the synthetic math world: teacher trajectories, held-out benchmark, RL prompts."""
        with console.status(f"writing the synthetic world to {cfg.out}"):
            summary = write_world(cfg.world, cfg.out)
        table = Table(title=f"oxa synth {cfg.out}", show_header=False, title_justify="left")
        for name, n in summary["counts"].items():
            table.add_row(summary["files"][name], f"{n:,} records")
        table.add_row("planted teacher errors", f"{summary['teacher_planted_errors']:,}")
        console.print(table)
        if cfg.base_model:
            path = build_base_model(cfg.base_config(), cache=cfg.cache, shipped=cfg.shipped)
            console.print(f"base model: [bold]{path}[/]")
            if not cfg.shipped and shipped_model(cfg.base_config()) is not None:
                console.print(f"largest weight difference from the shipped model: {weight_difference(path, SHIPPED):.3g}")
            if cfg.ship_to is not None:
                console.print(f"shipped to [bold]{ship(path, cfg.ship_to)}[/]")
