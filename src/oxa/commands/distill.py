"""`oxa distill`: train an instruct model on a small teacher set, sample, verify, score errors, select the UL set."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "distill", "oxa.distill:DistillConfig")
    def distill(cfg) -> None:
        """Self-distillation and error mining: RUN/ul_set.jsonl holds the lowest-PPL incorrect samples.

        Training settings for the instruct model go in --train (or `train:` in the config file: oxa train's keys).
        Re-running skips finished steps.
        """
        from oxa.distill import distill as run_distill

        path = run_distill(cfg, log=console.print)
        console.print(f"UL set: {path}")
