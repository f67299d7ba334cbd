"""`oxa data`: the named data sets - shipped, on the hub or in a data directory - with sources and licenses."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("data")
    def data() -> None:
        """List every named data set: rows, where it loads from, its source and its license.

        Any command that takes a benchmark also takes a record file, a dataset directory (DIR[:SPLIT]) or
        a hub dataset (hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]).
        """
        from oxa.data.__main__ import describe

        typer.echo(describe())
