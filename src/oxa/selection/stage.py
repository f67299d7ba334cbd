"""The ``oxa select`` stage: settings, dispatch to a method, and the file in, file out run with its
histogram report (JSON + PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from oxa.config import StageConfig
from oxa.errors import OxaError
from oxa.io import ReadStats, read_records, write_json, write_records
from oxa.plots import plot_ppl_histograms
from oxa.records import Fields
from oxa.selection.baselines import select_errors, select_highest, select_interval, select_lowest, select_random
from oxa.selection.columns import Columns, read_columns, read_rows
from oxa.selection.gaussian import select_gaussian
from oxa.selection.result import Selection

Method = Literal["gaussian", "lowest", "highest", "random", "interval", "errors"]


class SelectConfig(StageConfig):
    """Settings of ``oxa select`` (every field is also a flag, and a key of a ``--config`` YAML file)."""

    input: Path
    output: Path
    method: Method = "gaussian"
    n: int
    mu: float = 2.5
    sigma: float = 0.25
    ppl_min: float = 1.0
    ppl_max: float = 5.0
    bin_width: float = 0.05
    max_per_query: int = 1
    seed: int = 0
    redistribute: bool = False
    min_ppl: float = 1.2
    keep_unverified: bool = False
    ppl_field: str = "ppl"
    group_field: str | None = None
    length_field: str = "n_tokens"
    correct_field: str = "correct"
    fields: Fields = Fields()
    skip_bad: bool = False


def side_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """Where the histogram report goes: ``<OUT stem>.hist.json`` and ``<OUT stem>.hist.png`` beside OUT."""
    base = Path(output).with_suffix("")
    return base.with_name(base.name + ".hist.json"), base.with_name(base.name + ".hist.png")


def run_selection(records: Sequence[dict] | Columns, config: SelectConfig, *, source: str = "records") -> Selection:
    """Dispatch ``config.method`` on in-memory records (or on columns read by :func:`read_columns`)."""
    c = config
    common: dict[str, Any] = dict(max_per_query=c.max_per_query, seed=c.seed, ppl_field=c.ppl_field,
                                  group_field=c.group_field or c.fields.query, correct_field=c.correct_field,
                                  bin_width=c.bin_width, source=source)
    if c.method == "errors":
        return select_errors(records, c.n, min_ppl=c.min_ppl, **common)
    common["verified_only"] = not c.keep_unverified
    if c.method == "gaussian":
        return select_gaussian(records, c.n, mu=c.mu, sigma=c.sigma, ppl_min=c.ppl_min, ppl_max=c.ppl_max,
                               redistribute=c.redistribute, length_field=c.length_field,
                               response_field=c.fields.response, **common)
    if c.method == "interval":
        return select_interval(records, c.n, ppl_min=c.ppl_min, ppl_max=c.ppl_max, **common)
    return {"lowest": select_lowest, "highest": select_highest, "random": select_random}[c.method](records, c.n, **common)


def select_file(config: SelectConfig) -> tuple[Selection, dict[str, int]]:
    """What ``oxa select`` runs: read, select, write OUT and the histogram JSON + PNG (all atomically).

    A regular JSONL or Parquet file is read column-wise by Arrow and only the selected rows are parsed
    into records (:func:`read_columns`, :func:`read_rows`); anything else goes through
    :func:`oxa.io.read_records`, which names the bad line or skips it with ``skip_bad``. Both paths
    select the same records. Returns the selection and the read statistics.
    """
    c, source = config, str(config.input)
    if c.output.resolve() == c.input.resolve():
        raise OxaError(f"{c.output}: the output would overwrite the input; choose another path")
    read_stats = ReadStats()
    columns = read_columns(c.input, ppl_field=c.ppl_field, group_field=c.group_field or c.fields.query,
                           correct_field=c.correct_field, length_field=c.length_field if c.method == "gaussian" else None)
    rows = None if columns is None else read_rows(c.input, columns)
    if rows is None:
        records = read_records(c.input, skip_bad=c.skip_bad, stats=read_stats)
        sel = run_selection(records, c, source=source)
    else:
        sel = run_selection(columns, c, source=source)
        sel.records = rows(sel.indices)
        read_stats.read = len(columns.ppl)
    write_records(c.output, sel.records)
    hist_json, hist_png = side_paths(c.output)
    report = sel.histogram()
    report.update(input=source, output=str(c.output), skipped_lines=read_stats.skipped)
    write_json(hist_json, report)
    plot_ppl_histograms(
        {"pool (eligible)": sel.pool_ppl, "selected": sel.selected_ppl}, hist_png, target=sel.target,
        bin_edges=sel.edges, title=f"oxa select --method {sel.method}: {len(sel.indices):,} of {sel.stats['pool']:,}",
    )
    return sel, {"read": read_stats.read, "skipped": read_stats.skipped}
