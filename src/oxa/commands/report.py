"""`oxa report`: being written (see the issue tracker)."""

import typer


def register(app: typer.Typer) -> None:
    pass
