"""`oxa verify`: grade each record's response against its gold answer with math-verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import (AnswerFieldOpt, ConfigOpt, IdFieldOpt, QueryFieldOpt, ResponseFieldOpt, SkipBadOpt,
                                 console, field_flags)
from oxa.config import resolve


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        input: Annotated[Optional[Path], typer.Argument(help="Records with a response and a gold answer (JSONL, JSON array or Parquet).")] = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Graded records (.jsonl or .parquet); the summary goes to OUTPUT.summary.json.")] = None,
        workers: Annotated[int, typer.Option("--workers", "-w", help="Grading processes.")] = 2,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds one answer may take before it counts as a timeout.")] = 5.0,
        require_think: Annotated[bool, typer.Option("--require-think", help="A response without </think> is unparsable (the paper's RL reward).")] = False,
        block_size: Annotated[int, typer.Option("--block-size", help="Records graded between two saves of progress.")] = 4096,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
        config: ConfigOpt = None,
        skip_bad: SkipBadOpt = False,
        # named after their settings (fields.id -> fields_id) so a flag given on the command line is seen
        # as given by oxa.config.resolve and overrides the config file
        fields_id: IdFieldOpt = "id",
        fields_query: QueryFieldOpt = "query",
        fields_response: ResponseFieldOpt = "response",
        fields_answer: AnswerFieldOpt = "answer",
    ) -> None:
        """Add `correct`, `pred` and `verdict` to every record (resumable: re-run to continue).

        The answer is the last \\boxed{} after the last </think>; a response without one is `unparsable`.
        The gold may be text, a number, or a list where any element may match.
        """
        from oxa.verify import STATUSES, VerifyConfig, summary_path, verify_file

        flags = {"input": input, "output": output, "workers": workers, "timeout": timeout,
                 "require_think": require_think, "block_size": block_size, "progress": progress,
                 "skip_bad": skip_bad, **field_flags(fields_id, fields_query, fields_response, fields_answer)}
        cfg = resolve(VerifyConfig, config, flags)
        summary = verify_file(cfg)
        n = summary["records"]
        counts = "  ".join(f"{s} {summary[s]}" for s in STATUSES)
        accuracy = f"{summary['accuracy']:.2%}" if n else "n/a"
        console.print(f"verified {n} records: {counts}  (accuracy {accuracy})")
        if summary["skipped"]:
            console.print(f"[yellow]skipped {summary['skipped']} bad records[/], e.g. {summary['skip_reasons'][0]}")
        console.print(f"wrote {cfg.output} and {summary_path(cfg.output)}")
