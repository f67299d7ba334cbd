"""The ``oxa`` command: one sub-command per pipeline stage.

Each stage's command lives in ``oxa.commands.<stage>`` and registers itself on :data:`app`; its flags
are derived from the stage's settings model (:mod:`oxa.commands.flags`), and the work itself is done by
library modules (``oxa.verify``, ``oxa.scoring``, ...) that can be used without the CLI. User errors
(:class:`oxa.errors.OxaError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from oxa.commands import (
    data, demo, distill, evaluate, generate, report, rl, run, score, select, steps, synth, train, verify,
)
from oxa.errors import OxaError

app = typer.Typer(
    name="oxa",
    help="Offline exploration-aware fine-tuning (OXA) for math-reasoning language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (verify, score, select, synth, demo, train, generate, distill, evaluate, rl, steps, report, data, run):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; typer reports usage errors itself, and an :class:`OxaError` becomes one line, exit 2."""
    try:
        app(args=argv)
    except OxaError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
