"""`oxa demo`: the OXA pipeline end to end on the synthetic world, on a laptop CPU, with no download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import ConfigOpt, console
from oxa.config import resolve


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (data sets, manifest.json, report.md).")] = Path("runs/demo"),
        seed: Annotated[int, typer.Option(help="Seed of the world and the selections.")] = 0,
        quick: Annotated[bool, typer.Option("--quick", help="A small world and base model (about a minute; used by tests).")] = False,
        cache: Annotated[Optional[Path], typer.Option("--cache", help="Cache root for base models (default: $OXA_CACHE or ~/.cache/oxa).")] = None,
        workers: Annotated[int, typer.Option(help="Verifier processes.")] = 2,
        force: Annotated[bool, typer.Option("--force", help="Redo every stage even if its outputs are up to date.")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """The OXA pipeline on the synthetic world: build it and its base model, verify -> score -> select,
        self-distil and mine errors, fine-tune SFT_LP / SFT / OXA_MLE / OXA_Full, evaluate, report.

        Finished stages are reused on a re-run (manifest.json records each stage's settings hash and outputs).
        """
        from oxa.demo import DemoConfig, run_demo

        cfg = resolve(DemoConfig, config, {"out": out, "seed": seed, "quick": quick, "cache": cache, "workers": workers})
        manifest = run_demo(cfg, force=force, log=lambda msg: console.print(f"[bold cyan]demo[/] {msg}"))
        console.print(f"finished in {manifest['seconds']:.1f} s: [bold]{cfg.out / 'report.md'}[/]")
