"""The ``oxa`` command: one sub-command per pipeline stage.

Each stage's command lives in ``oxa.commands.<stage>`` and registers itself on :data:`app`; the
work itself is done by library modules (``oxa.verify``, ``oxa.scoring``, ...) that can be used without
the CLI. User errors (:class:`oxa.errors.OxaError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from oxa.commands import demo, distill, evaluate, generate, report, score, select, synth, train, verify
from oxa.errors import OxaError

app = typer.Typer(
    name="oxa",
    help="Offline exploration-aware fine-tuning (OXA) for math-reasoning language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (verify, score, select, synth, demo, train, generate, distill, evaluate, report):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    err = Console(stderr=True)
    try:
        code = app(args=argv, standalone_mode=False)
    except OxaError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("[yellow]interrupted[/]: finished work is kept; re-run the same command to resume")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
