"""`oxa demo`: the OXA pipeline end to end on the synthetic world, on a laptop CPU, with no download."""

from __future__ import annotations

import typer
from pydantic import BaseModel, ConfigDict, Field

from oxa.commands.common import console
from oxa.commands.flags import stage_command


class DemoOptions(BaseModel):
    """How to run the demo, beside its settings."""

    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="redo every stage even if its outputs are up to date")
    seeds: list[int] | None = Field(None, description="run the demo once per seed, in OUT/seed-S (repeatable: --seeds 0 "
                                    "--seeds 1), and write OUT/report.md: each method's spread and the paper's claims")


def register(app: typer.Typer) -> None:
    @stage_command(app, "demo", "oxa.demo:DemoConfig", options=DemoOptions)
    def demo(cfg, options: DemoOptions) -> None:
        """The OXA pipeline on the synthetic world: build it and its base model, verify -> score -> select,
        self-distil and mine errors, fine-tune SFT_LP / SFT / OXA_MLE / OXA_Full, evaluate, report.

        Finished stages are reused on a re-run (manifest.json records each stage's settings hash and outputs).
        """
        from oxa.demo import run_demo

        if options.seeds:
            from oxa.seeds import run_seeds

            path = run_seeds(cfg, options.seeds, force=options.force,
                             log=lambda msg: console.print(f"[bold cyan]demo[/] {msg}"))
            console.print(f"finished: [bold]{path}[/]")
            return
        manifest = run_demo(cfg, force=options.force, log=lambda msg: console.print(f"[bold cyan]demo[/] {msg}"))
        console.print(f"finished in {manifest['seconds']:.1f} s: [bold]{cfg.out / 'report.md'}[/]")
