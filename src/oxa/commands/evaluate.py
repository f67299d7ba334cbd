"""`oxa eval`: Pass@1, Pass@k, entropy and response length of a model on math benchmarks."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "eval", "oxa.evaluation:EvalConfig")
    def eval_(cfg) -> None:
        """Sample N answers per problem, grade them, write OUT/results.json and OUT/samples.jsonl."""
        from oxa.evaluation import evaluate
        from oxa.report import console_table

        results = evaluate(cfg)
        if not results:
            return  # a helper rank under torchrun: rank 0 reports
        console.print(console_table(results))
        console.print(f"wrote {cfg.output / 'results.json'} and {cfg.output / 'samples.jsonl'}")
