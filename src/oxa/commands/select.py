"""`oxa select`: choose a training subset by perplexity (Algorithm 1, its baselines, error mining)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from oxa.commands.common import console
from oxa.commands.flags import stage_command

if TYPE_CHECKING:
    from oxa.selection import Selection

_DROPPED = {
    "not_correct": "dropped: not verified correct (--all keeps them)",
    "not_incorrect": "dropped: not marked incorrect",
    "no_ppl": "dropped: missing / NaN / inf PPL",
    "out_of_range": "dropped: PPL outside --ppl-min .. --ppl-max",
    "outside_ppl_bounds": "dropped: PPL below --min-ppl",
}


def register(app: typer.Typer) -> None:
    @stage_command(app, "select", "oxa.selection:SelectConfig")
    def select(cfg) -> None:
        """Select N records by perplexity; also writes OUT-stem.hist.json and OUT-stem.hist.png."""
        from oxa.selection import select_file, side_paths

        with console.status(f"selecting {cfg.n:,} records from {cfg.input} ({cfg.method})"):
            sel, read = select_file(cfg)
        print_summary(sel, read["skipped"])
        hist_json, hist_png = side_paths(cfg.output)
        console.print(f"wrote [bold]{cfg.output}[/] ({len(sel.records):,} records), {hist_json}, {hist_png}")


def print_summary(sel: Selection, skipped_lines: int = 0) -> None:
    """The counts that explain a selection, and the bins that fell short of the Gaussian target."""
    s = sel.stats
    table = Table(title=f"oxa select --method {sel.method}", show_header=False, title_justify="left")
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("records read", f"{s['pool']:,}")
    if skipped_lines:
        table.add_row("malformed lines skipped", f"{skipped_lines:,}")
    for key, label in _DROPPED.items():
        if s.get(key):
            table.add_row(label, f"{s[key]:,}")
    table.add_row("eligible", f"{s['eligible']:,}")
    if s["skipped_query_cap"]:
        table.add_row("passed over: query already at --max-per-query", f"{s['skipped_query_cap']:,}")
    table.add_row("[bold]selected[/]", f"[bold]{s['selected']:,}[/] of {sel.params['n']:,} requested")
    if sel.target is not None:
        table.add_row("bins short of target", f"{s['short_bins']} (total shortfall {s['shortfall']:,})")
        if sel.params.get("redistribute"):
            table.add_row("redistributed to neighbouring bins", f"{s['redistributed']:,}")
    console.print(table)
    if s.get("no_verdicts"):
        console.print("[yellow]warning:[/] no record has a verifier verdict ('correct'): selected from unverified "
                      "data; run oxa verify first to train only on correct responses")
    short = sel.short_bins
    if short:
        bins = Table(title="bins short of target", title_justify="left")
        for col in ("PPL bin", "target", "selected", "eligible"):
            bins.add_column(col, justify="right")
        for b in short[:12]:
            bins.add_row(f"[{sel.edges[b]:.2f}, {sel.edges[b + 1]:.2f})", f"{sel.target[b]:,}",
                         f"{sel.selected_hist[b]:,}", f"{sel.pool_hist[b]:,}")
        if len(short) > 12:
            bins.add_row(f"... {len(short) - 12} more", "", "", "")
        console.print(bins)
