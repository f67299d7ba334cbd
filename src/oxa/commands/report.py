"""`oxa report`: a markdown comparison of runs with Pass@k, entropy, difficulty and PPL plots."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "report", "oxa.report:ReportConfig")
    def report(cfg) -> None:
        """Compare runs: Table-1-style Pass@1/Pass@k, Pass@k curves, entropy, gains by difficulty, PPL histograms."""
        from oxa.report import report_file

        path = report_file(cfg)
        console.print(f"wrote {path} and its plots")
