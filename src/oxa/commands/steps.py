"""`oxa steps`: per-step process-reward scores and the first wrong step of every response."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "steps", "oxa.prm.stage:StepsConfig")
    def steps(cfg) -> None:
        """Score each step of every response with a PRM and mark the first error (resumable, sharded).

        The PRM is the synthetic world's exact checker (``--prm checker``) or a transformers PRM from a
        directory (Qwen2.5-Math-PRM or Math-Shepherd style). With ``--label-field`` the true first errors
        are compared ProcessBench-style: first-error accuracy on wrong responses, no-error accuracy on
        right ones, and their F1.
        """
        from oxa.prm.stage import annotate_steps_file

        summary = annotate_steps_file(cfg)
        if summary is not None:
            console.print(summary.line(), soft_wrap=True)
