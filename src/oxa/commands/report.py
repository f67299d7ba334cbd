"""`oxa report`: a markdown comparison of runs with Pass@k, entropy, difficulty and PPL plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import ConfigOpt, console
from oxa.config import resolve


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        runs: Annotated[Optional[list[Path]], typer.Argument(help="Run directories (each holding an `oxa eval` results.json).")] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Directory for report.md and its PNGs.")] = Path("report"),
        names: Annotated[Optional[list[str]], typer.Option("--name", help="Display name per run, in order (repeatable).")] = None,
        baseline: Annotated[Optional[Path], typer.Option(
            "--baseline", help="Run (dir or name) whose pass counts define difficulty buckets (Figure 2d).")] = None,
        title: Annotated[str, typer.Option("--title", help="Report title.")] = "OXA run comparison",
        config: ConfigOpt = None,
    ) -> None:
        """Compare runs: Table-1-style Pass@1/Pass@k, Pass@k curves, entropy, gains by difficulty, PPL histograms."""
        from oxa.report import ReportConfig, report_file

        flags = {"runs": runs or None, "output": output, "names": names or None, "baseline": baseline, "title": title}
        path = report_file(resolve(ReportConfig, config, flags))
        console.print(f"wrote {path} and its plots")
