"""`oxa run RECIPE`: a whole OXA recipe, from one YAML file, resumable stage by stage."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "run", "oxa.pipeline.run:RunConfig")
    def run(cfg) -> None:
        """Run a recipe (a file, or a shipped one: demo, smollm2-gsm8k, paper-qwen2.5-math-1.5b, -7b): its
        stages in order, each reused when its settings and inputs are unchanged and its outputs exist.

        `--from STAGE` redoes a stage and all after it, `--only STAGE` just that one; `--set KEY=VALUE`
        changes the recipe (models.base=DIR, STAGE.SETTING=VALUE). The run directory's manifest.json
        records each stage's settings, inputs, counts, seconds and the package versions.
        """
        from oxa.pipeline.run import run_config

        manifest = run_config(cfg, log=lambda msg: console.print(f"[bold cyan]run[/] {msg}", highlight=False))
        console.print(f"finished in {manifest['seconds']:.1f} s")
