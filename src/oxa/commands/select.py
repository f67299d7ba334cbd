"""`oxa select`: choose a training subset by perplexity (Algorithm 1, its baselines, error mining)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from oxa.commands.common import (
    AnswerFieldOpt,
    ConfigOpt,
    IdFieldOpt,
    QueryFieldOpt,
    ResponseFieldOpt,
    SkipBadOpt,
    console,
    field_flags,
)
from oxa.config import resolve
from oxa.selection import Selection, SelectConfig, select_file, side_paths

_DROPPED = {
    "not_correct": "dropped: not verified correct (--all keeps them)",
    "not_incorrect": "dropped: not marked incorrect",
    "no_ppl": "dropped: missing / NaN / inf PPL",
    "out_of_range": "dropped: PPL outside --ppl-min .. --ppl-max",
    "outside_ppl_bounds": "dropped: PPL below --min-ppl",
}


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select(
        input: Annotated[Optional[Path], typer.Argument(help="Scored records (JSONL, JSON array or Parquet).")] = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Selected records (.jsonl or .parquet).")] = None,
        method: Annotated[str, typer.Option(help="gaussian | lowest | highest | random | interval | errors.")] = "gaussian",
        n: Annotated[Optional[int], typer.Option("--n", help="How many records to select.")] = None,
        mu: Annotated[float, typer.Option(help="gaussian: centre of the target PPL distribution.")] = 2.5,
        sigma: Annotated[float, typer.Option(help="gaussian: its standard deviation.")] = 0.25,
        ppl_min: Annotated[float, typer.Option(help="gaussian/interval: lowest PPL kept.")] = 1.0,
        ppl_max: Annotated[float, typer.Option(help="gaussian/interval: highest PPL kept.")] = 5.0,
        bin_width: Annotated[float, typer.Option(help="Width of the PPL bins.")] = 0.05,
        max_per_query: Annotated[int, typer.Option(help="At most this many records per query.")] = 1,
        seed: Annotated[int, typer.Option(help="Seed for random order and ties.")] = 0,
        redistribute: Annotated[bool, typer.Option(help="gaussian: move a short bin's deficit to the nearest bins with supply.")] = False,
        min_ppl: Annotated[float, typer.Option(help="errors: ignore incorrect samples below this PPL (degenerate repetition).")] = 1.2,
        keep_unverified: Annotated[bool, typer.Option("--all", help="CE methods: also select records not marked correct.")] = False,
        ppl_field: Annotated[str, typer.Option(help="Record field holding the PPL.")] = "ppl",
        group_field: Annotated[Optional[str], typer.Option(help="Field grouping records by query (default: the query field).")] = None,
        length_field: Annotated[str, typer.Option(help="gaussian: field with the response length; else the response's characters.")] = "n_tokens",
        correct_field: Annotated[str, typer.Option(help="Field with the verifier's verdict (true/false).")] = "correct",
        fields_id: IdFieldOpt = "id",
        fields_query: QueryFieldOpt = "query",
        fields_response: ResponseFieldOpt = "response",
        fields_answer: AnswerFieldOpt = "answer",
        skip_bad: SkipBadOpt = False,
        config: ConfigOpt = None,
    ) -> None:
        """Select N records by perplexity; also writes OUT-stem.hist.json and OUT-stem.hist.png."""
        flags = dict(
            input=input, output=output, method=method, n=n, mu=mu, sigma=sigma, ppl_min=ppl_min, ppl_max=ppl_max,
            bin_width=bin_width, max_per_query=max_per_query, seed=seed, redistribute=redistribute,
            min_ppl=min_ppl, keep_unverified=keep_unverified, ppl_field=ppl_field, group_field=group_field,
            length_field=length_field, correct_field=correct_field, skip_bad=skip_bad,
            **field_flags(fields_id, fields_query, fields_response, fields_answer),
        )
        cfg = resolve(SelectConfig, config, flags)
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
