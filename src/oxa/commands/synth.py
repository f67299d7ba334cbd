"""`oxa synth`: write the synthetic math world's data splits (and build its base model on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from oxa.commands.common import ConfigOpt, console
from oxa.config import StageConfig, resolve
from oxa.synth.basemodel import QUICK_BASE, BaseModelConfig, build_base_model
from oxa.synth.world import WorldConfig, register_benchmarks, write_world

register_benchmarks()  # `oxa evaluate --benchmark synth-hard` and friends work from any command


class SynthConfig(StageConfig):
    """Settings of ``oxa synth``: the world's sizes, and optionally the base model to build."""

    out: Path
    world: WorldConfig = WorldConfig()
    base_model: bool = False
    base: Optional[BaseModelConfig] = None  # default: BaseModelConfig(), or QUICK_BASE with quick
    quick: bool = False
    cache: Optional[Path] = None

    def base_config(self) -> BaseModelConfig:
        return self.base or (QUICK_BASE if self.quick else BaseModelConfig())


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        out: Annotated[Optional[Path], typer.Argument(help="Directory for teacher.jsonl, benchmark.jsonl, rl.jsonl, world.json.")] = None,
        world_seed: Annotated[int, typer.Option("--seed", help="Seed of the world (splits are deterministic for it).")] = 0,
        world_n_queries: Annotated[int, typer.Option("--n-queries", help="Teacher queries.")] = 400,
        world_samples_per_query: Annotated[int, typer.Option("--samples-per-query", help="Teacher trajectories per query.")] = 4,
        world_teacher_error_rate: Annotated[float, typer.Option("--teacher-error-rate", help="Share of teacher trajectories with a planted slip.")] = 0.1,
        world_benchmark_per_difficulty: Annotated[int, typer.Option("--benchmark-per-difficulty", help="Held-out problems per difficulty.")] = 60,
        world_rl_prompts: Annotated[int, typer.Option("--rl-prompts", help="RLVR prompts.")] = 200,
        base_model: Annotated[bool, typer.Option("--base-model", help="Also build (or reuse) the pre-trained base model.")] = False,
        quick: Annotated[bool, typer.Option("--quick", help="With --base-model: the small, fast base model used by tests.")] = False,
        cache: Annotated[Optional[Path], typer.Option("--cache", help="Cache root for base models (default: $OXA_CACHE or ~/.cache/oxa).")] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Write the synthetic math world: teacher trajectories, held-out benchmark, RL prompts."""
        flags = {"out": out, "world.seed": world_seed, "world.n_queries": world_n_queries,
                 "world.samples_per_query": world_samples_per_query,
                 "world.teacher_error_rate": world_teacher_error_rate,
                 "world.benchmark_per_difficulty": world_benchmark_per_difficulty, "world.rl_prompts": world_rl_prompts,
                 "base_model": base_model, "quick": quick, "cache": cache}
        cfg = resolve(SynthConfig, config, flags)
        with console.status(f"writing the synthetic world to {cfg.out}"):
            summary = write_world(cfg.world, cfg.out)
        table = Table(title=f"oxa synth {cfg.out}", show_header=False, title_justify="left")
        for name, n in summary["counts"].items():
            table.add_row(summary["files"][name], f"{n:,} records")
        table.add_row("planted teacher errors", f"{summary['teacher_planted_errors']:,}")
        console.print(table)
        if cfg.base_model:
            path = build_base_model(cfg.base_config(), cache=cfg.cache)
            console.print(f"base model: [bold]{path}[/]")
