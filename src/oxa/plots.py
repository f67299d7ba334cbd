"""PNG plots shared by ``oxa select``, the demo and the report (matplotlib, headless Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from oxa.binning import display_binning
from oxa.io import atomic_open

_COLOURS = ("#9aa5b1", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b")


def _edges_for(values: list[np.ndarray], width: float = 0.05) -> np.ndarray:
    """The bins ``oxa select`` shows a non-Gaussian selection in, over the finite values of every series."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    return display_binning(finite, width).edges


def plot_ppl_histograms(
    series: Mapping[str, Sequence[float] | np.ndarray],
    path: str | os.PathLike,
    *,
    target: Sequence[float] | np.ndarray | None = None,
    bin_edges: Sequence[float] | np.ndarray | None = None,
    title: str | None = None,
    log: bool | None = None,
) -> Path:
    """Overlay PPL histograms of several named series (first drawn behind) and an optional target.

    ``target`` holds one count per bin of ``bin_edges`` and is drawn as a black step line. The y axis
    is logarithmic when ``log`` is True, or (``log=None``) when the tallest series is over 10 times
    the shortest, so a 2.6M-record pool and a 50k selection stay readable on one axis. Values outside
    the edges are left out and their count shown in the legend. The PNG is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in series.items()}
    edges = np.asarray(bin_edges, dtype=np.float64) if bin_edges is not None else _edges_for(list(arrays.values()))
    counts = {name: np.histogram(v[np.isfinite(v)], bins=edges)[0] for name, v in arrays.items()}
    tallest = [c.max() for c in counts.values() if c.size and c.max() > 0]
    if target is not None and np.max(target) > 0:
        tallest.append(float(np.max(target)))
    if log is None:
        log = len(tallest) > 1 and max(tallest) > 10 * min(tallest)

    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    for k, (name, c) in enumerate(counts.items()):
        v = arrays[name]
        outside = int((np.isfinite(v) & ((v < edges[0]) | (v > edges[-1]))).sum())
        label = f"{name} (n={len(v):,}" + (f", {outside:,} outside" if outside else "") + ")"
        ax.stairs(c, edges, fill=True, alpha=0.55 if k else 0.45, color=_COLOURS[k % len(_COLOURS)], label=label)
    if target is not None:
        t = np.asarray(target, dtype=np.float64)
        ax.stairs(t, edges, color="black", linewidth=1.4, label=f"target (n={int(t.sum()):,})")
    ax.set_xlabel("perplexity (PPL)")
    ax.set_ylabel("records per bin" + (" (log scale)" if log else ""))
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.8)
    ax.set_xlim(edges[0], edges[-1])
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.25)
    ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
    return path
