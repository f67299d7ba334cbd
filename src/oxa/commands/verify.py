"""`oxa verify`: grade each record's response against its gold answer with math-verify."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "verify", "oxa.verify:VerifyConfig")
    def verify(cfg) -> None:
        """Add `correct`, `pred` and `verdict` to every record (resumable: re-run to continue).

        The answer is the last \\boxed{} after the last </think>; a response without one is `unparsable`.
        The gold may be text, a number, or a list where any element may match.
        """
        from oxa.verify import STATUSES, summary_path, verify_file

        summary = verify_file(cfg)
        n = summary["records"]
        counts = "  ".join(f"{s} {summary[s]}" for s in STATUSES)
        accuracy = f"{summary['accuracy']:.2%}" if n else "n/a"
        console.print(f"verified {n} records: {counts}  (accuracy {accuracy})")
        if summary["skipped"]:
            console.print(f"[yellow]skipped {summary['skipped']} bad records[/], e.g. {summary['skip_reasons'][0]}")
        console.print(f"wrote {cfg.output} and {summary_path(cfg.output)}")
