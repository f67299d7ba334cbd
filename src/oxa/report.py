"""`oxa report`: compare runs in one markdown page with the paper's table and figures.

A run directory is anything holding an ``oxa eval`` ``results.json`` (directly or one level down,
e.g. ``RUN/eval/results.json``); PPL histogram reports written by ``oxa select`` (``*.hist.json``)
found in it are drawn too. The page has:

* a Table-1-style comparison: Pass@1 and Pass@k (k = n) per benchmark and their "Avg." (in %);
* ``passk.png``: Pass@k curves per method and benchmark (Figure 3);
* ``entropy.png``: policy entropy and mean response length per method;
* ``difficulty.png``: Pass@1 gains over a baseline by the baseline's pass-count bucket (Figure 2d),
  with ``--baseline RUN`` (or from the buckets ``oxa eval --reference`` stored);
* ``ppl_<run>_<selection>.png``: pool, selection and target PPL histograms;
* ``rl_curves.png``: for RL runs (an ``oxa rl`` output directory, holding ``rl_metrics.jsonl``),
  training reward, policy entropy and held-out Pass@1 against the optimizer step, runs side by side
  (Figure 2b-c), with a table of where each run started and ended.

A run may be an evaluation run, an RL run, or both (an RL directory with an ``oxa eval`` results.json).

Runs given the same ``--name`` are one method under several seeds (paired seed by seed in the order
given); they appear as ``NAME/s1``, ``NAME/s2``, ... in the per-run sections. When the names include the
paper's methods (``base``, ``sft_lp``, ``sft``, ``oxa_mle``, ``oxa_full``, and ``+rl`` after RLVR) the
page opens with each method's mean ± spread over seeds and the four claims with their bootstrap
intervals (:mod:`oxa.evaluation.claims`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.errors import OxaError
from oxa.evaluation.claims import RL, ROLES, SeedRun, claims_markdown, evaluate_claims, role, summary_table
from oxa.evaluation.difficulty import bucket_gains
from oxa.evaluation.significance import entropy_table
from oxa.io import write_text


@dataclass
class Run:
    name: str
    path: Path
    results: dict
    histograms: list[Path] = field(default_factory=list)
    results_file: Path | None = None

    @property
    def benchmarks(self) -> dict[str, dict]:
        return self.results["benchmarks"]


def load_run(path: str | Path, name: str | None = None) -> Run:
    """The eval results and selection histograms of one run directory (or a results.json file)."""
    path = Path(path)
    if path.is_file():
        results_file, root = path, path.parent
    else:
        found = sorted(path.glob("results.json")) or sorted(path.glob("*/results.json"))
        if not found:
            raise OxaError(f"{path}: no results.json (from `oxa eval`) in it or one level down")
        if len(found) > 1:
            raise OxaError(f"{path}: several results.json ({', '.join(str(f) for f in found)}); name one file")
        results_file, root = found[0], path
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise OxaError(f"{results_file}: malformed JSON: {e}") from None
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict) or not results["benchmarks"]:
        raise OxaError(f"{results_file}: not an `oxa eval` results.json (no 'benchmarks' mapping)")
    hists = sorted(root.glob("*.hist.json")) + sorted(root.glob("*/*.hist.json"))
    return Run(name or root.name or str(root), root, results, hists, results_file)


def _benchmark_names(runs: list[Run]) -> list[str]:
    """Every benchmark of any run, in first-seen order."""
    return list(dict.fromkeys(b for r in runs for b in r.benchmarks))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def comparison_table(runs: list[Run]) -> str:
    """Markdown: one row per run; Pass@1 and Pass@k (k = n) per benchmark, then their averages.

    Benchmarks are the union over runs (a run lacking one shows "–"); the average of each run is over
    the benchmarks it has, as in its results.json.
    """
    names = _benchmark_names(runs)
    head = ["Model"] + [f"{b} {m}" for b in names for m in ("Pass@1", f"Pass@{_k_label(runs, b)}")]
    head += ["Avg. Pass@1", "Avg. Pass@k"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [r.name]
        for b in names:
            m = r.benchmarks.get(b)
            cells += [_pct(m["pass@1"]) if m else "–", _pct(m["pass@k"][str(m["samples_per_problem"])]) if m else "–"]
        avg = r.results.get("average", {})
        cells += [_pct(avg.get("pass@1")), _pct(avg.get("pass@n"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _k_label(runs: list[Run], bench: str) -> str:
    ks = sorted({r.benchmarks[bench]["samples_per_problem"] for r in runs if bench in r.benchmarks})
    return "/".join(map(str, ks))


def details_table(runs: list[Run]) -> str:
    """Markdown: per run, averaged over its benchmarks: entropy, response length, truncation rate."""
    lines = ["| Model | Entropy | Sampling entropy | Mean tokens | Cut at max tokens |", "|---|---|---|---|---|"]
    for r in runs:
        bs = list(r.benchmarks.values())
        ent = [b["entropy"] for b in bs if b.get("entropy") is not None]
        sent = [b["sampling_entropy"] for b in bs if b.get("sampling_entropy") is not None]
        total = sum(sum(b["finish_reasons"].values()) for b in bs)
        cut = sum(b["finish_reasons"].get("length", 0) for b in bs)
        lines.append(f"| {r.name} | {_mean_str(ent, 3)} | {_mean_str(sent, 3)} | "
                     f"{np.mean([b['mean_response_tokens'] for b in bs]):.1f} | {_pct(cut / total if total else None)}% |")
    return "\n".join(lines)


def _mean_str(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f}" if values else "–"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from oxa.io import atomic_open

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _grid(count: int):
    plt = _pyplot()
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=110, squeeze=False,
                             layout="constrained")  # axis labels clear of the next row's titles
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def plot_passk(runs: list[Run], path: Path) -> Path:
    """Pass@k against k (log2 axis), one panel per benchmark plus the average over shared benchmarks."""
    names = _benchmark_names(runs)
    panels = names + (["Avg."] if len(names) > 1 else [])
    fig, axes = _grid(len(panels))
    for ax, bench in zip(axes, panels):
        for i, r in enumerate(runs):
            curve = r.results.get("average", {}).get("pass@k") if bench == "Avg." else r.benchmarks.get(bench, {}).get("pass@k")
            if not curve:
                continue
            ks = sorted(curve, key=int)
            ax.plot([int(k) for k in ks], [100 * curve[k] for k in ks], marker="o", ms=3, label=r.name, color=f"C{i}")
        ax.set_xscale("log", base=2)
        ax.set_title(bench)
        ax.set_xlabel("k")
        ax.set_ylabel("Pass@k (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Pass@k by method", y=1.03)
    return _save(fig, path)


def plot_entropy(runs: list[Run], path: Path) -> Path:
    """Grouped bars per benchmark: policy entropy (left) and mean response length (right) of each run."""
    plt = _pyplot()
    names = _benchmark_names(runs)
    fig, (ax_h, ax_len) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(names) * 2), 3.8), dpi=110)
    width = 0.8 / len(runs)
    x = np.arange(len(names))
    for i, r in enumerate(runs):
        ent = [r.benchmarks.get(b, {}).get("entropy") for b in names]
        tokens = [r.benchmarks.get(b, {}).get("mean_response_tokens") for b in names]
        ax_h.bar(x + i * width, [np.nan if v is None else v for v in ent], width, label=r.name, color=f"C{i}")
        ax_len.bar(x + i * width, [np.nan if v is None else v for v in tokens], width, label=r.name, color=f"C{i}")
    for ax, label in ((ax_h, "policy entropy (nats / token)"), (ax_len, "mean response length (tokens)")):
        ax.set_xticks(x + width * (len(runs) - 1) / 2, names, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    ax_h.legend(fontsize=8)
    fig.suptitle("Policy entropy and response length by method")
    return _save(fig, path)


def difficulty_gains(runs: list[Run], baseline: Run | None) -> dict[str, dict[str, list[dict]]]:
    """benchmark -> run name -> bucket rows (see :func:`oxa.evaluation.bucket_gains`).

    Against ``baseline`` when given (problems matched by id); otherwise the buckets each run's
    ``oxa eval --reference`` stored.
    """
    out: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        if baseline is not None and r.path == baseline.path:
            continue
        for bench, m in r.benchmarks.items():
            if baseline is not None:
                if bench in baseline.benchmarks:
                    out.setdefault(bench, {})[r.name] = bucket_gains(m["per_problem"], baseline.benchmarks[bench]["per_problem"])
            elif m.get("difficulty"):
                out.setdefault(bench, {})[r.name] = m["difficulty"]
    return out


def plot_difficulty(gains: dict[str, dict[str, list[dict]]], path: Path, baseline_name: str) -> Path:
    """Grouped bars: Pass@1 gain (points) per baseline pass-count bucket, per benchmark panel."""
    fig, axes = _grid(len(gains))
    for ax, (bench, by_run) in zip(axes, gains.items()):
        buckets = [row["bucket"] for row in next(iter(by_run.values()))]
        width = 0.8 / len(by_run)
        x = np.arange(len(buckets))
        for i, (name, rows) in enumerate(by_run.items()):
            bars = ax.bar(x + i * width, [0.0 if row["gain"] is None else 100 * row["gain"] for row in rows], width,
                          label=name, color=f"C{i + 1}")
            ax.bar_label(bars, ["" if row["gain"] is None else f"{100 * row['gain']:+.1f}" for row in rows], fontsize=7)
        counts = [max(row["problems"] for rows in by_run.values() for row in rows if row["bucket"] == b) for b in buckets]
        ax.set_xticks(x + width * (len(by_run) - 1) / 2, [f"{b}\n(n={c})" for b, c in zip(buckets, counts)], fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(bench)
        ax.set_xlabel(f"{baseline_name} pass count")
        ax.set_ylabel("Pass@1 gain (points)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Gains over {baseline_name} by problem difficulty", y=1.03)
    return _save(fig, path)


def plot_selection_histogram(hist_json: Path, path: Path, title: str) -> Path:
    """Redraw an ``oxa select`` histogram report (pool, selection, target) with :mod:`oxa.plots`."""
    from oxa.plots import plot_ppl_histograms

    data = json.loads(hist_json.read_text(encoding="utf-8"))
    bins = data["bins"]
    edges = np.array([b["lo"] for b in bins] + [bins[-1]["hi"]])
    centres = (edges[:-1] + edges[1:]) / 2  # each count placed at its bin centre redraws the same histogram
    series = {name: np.repeat(centres, [b[key] for b in bins]) for name, key in (("pool", "pool"), ("selected", "selected"))}
    target = [b["target"] for b in bins] if "target" in bins[0] else None
    return plot_ppl_histograms(series, path, target=target, bin_edges=edges, title=title)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


# ------------------------------------------------------------------------------------ RL curves

RL_METRICS_FILE = "rl_metrics.jsonl"
RL_PANELS = {"reward_mean": "Training reward (mean)", "entropy": "Policy entropy (nats / token)",
             "response_length": "Response length (tokens)", "kl": "KL to the start", "reward_std": "Reward std",
             "frac_zero_std_groups": "Groups without signal (share)", "clip_fraction": "Clip fraction",
             "diversity/distinct_answers": "Distinct final answers per group",
             "diversity/distinct_paths": "Distinct reasoning paths per group",
             "salvage/successes": "Failed rollouts salvaged (per step)"}
"""Training metrics ``oxa report`` can draw, with their panel titles (keys of ``rl_metrics.jsonl``)."""
_PASS1 = re.compile(r"^eval/(.+)/pass@1$")


@dataclass
class RLRun:
    """One RL run's logged rows (``rl_metrics.jsonl``), in step order."""

    name: str
    path: Path
    rows: list[dict]

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the rows holding a finite number under ``key``; a step logged twice (a
        resumed run that logged it again) keeps its last value."""
        points = {r["step"]: float(r[key]) for r in self.rows
                  if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and math.isfinite(r[key])}
        steps = sorted(points)
        return np.array(steps, dtype=float), np.array([points[s] for s in steps], dtype=float)

    @property
    def benchmarks(self) -> list[str]:
        """Benchmarks with held-out Pass@1 rows (``eval/<benchmark>/pass@1``), in first-seen order."""
        return list(dict.fromkeys(m.group(1) for r in self.rows for k in r if (m := _PASS1.match(k))))


def find_rl_metrics(path: str | Path) -> Path | None:
    """``rl_metrics.jsonl`` of a run: the path itself, in the directory, or one level down; None if none."""
    path = Path(path)
    if path.is_file():
        return path if path.name.endswith(".jsonl") else None
    found = sorted(path.glob(RL_METRICS_FILE)) or sorted(path.glob(f"*/{RL_METRICS_FILE}"))
    if len(found) > 1:
        raise OxaError(f"{path}: several {RL_METRICS_FILE} ({', '.join(map(str, found))}); name one file")
    return found[0] if found else None


def load_rl_run(path: str | Path, name: str | None = None) -> RLRun:
    """The rows of an ``rl_metrics.jsonl`` (or of the run directory holding one). Each row needs an
    integer ``step``; a malformed line is an error naming file and line, except a torn last line (a run
    killed while writing), which is skipped."""
    file = find_rl_metrics(path)
    if file is None:
        raise OxaError(f"{path}: no {RL_METRICS_FILE} (from `oxa rl`) in it or one level down")
    lines = file.read_text(encoding="utf-8").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            if i == last:
                break
            raise OxaError(f"{file}:{i + 1}: malformed JSON: {e}") from None
        if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise OxaError(f"{file}:{i + 1}: a metrics row must be a JSON object with an integer 'step'")
        rows.append(row)
    if not rows:
        raise OxaError(f"{file}: no metrics rows")
    rows.sort(key=lambda r: r["step"])  # stable: a step logged twice keeps its order
    return RLRun(name or file.parent.name or str(file), file.parent, rows)


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (the first points average what there is)."""
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def rl_curves_figure(runs: list[RLRun], *, metrics: tuple[str, ...] = ("reward_mean", "entropy"),
                     benchmarks: list[str] | None = None, smooth: int = 1):
    """The Figure 2b-c panels: each training metric, then held-out Pass@1 (%) per benchmark, against the
    optimizer step; one line per run (same colour in every panel). Returns the matplotlib figure."""
    benchmarks = benchmarks if benchmarks is not None else list(dict.fromkeys(b for r in runs for b in r.benchmarks))
    panels = [(m, RL_PANELS.get(m, m), smooth, 1.0) for m in metrics]
    panels += [(f"eval/{b}/pass@1", f"Held-out Pass@1 (%): {b}", 1, 100.0) for b in benchmarks]
    fig, axes = _grid(len(panels))
    for ax, (key, title, window, scale) in zip(axes, panels):
        for i, r in enumerate(runs):
            steps, values = r.series(key)
            if len(steps):
                ax.plot(steps, scale * smoothed(values, window), label=r.name, color=f"C{i}",
                        marker="o" if key.startswith("eval/") else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("RL training" + (f" (trailing mean over {smooth} steps)" if smooth > 1 else ""), y=1.03)
    return fig


def plot_rl_curves(runs: list[RLRun], path: Path, **kwargs) -> Path:
    """Save :func:`rl_curves_figure` as a PNG."""
    return _save(rl_curves_figure(runs, **kwargs), path)


def _ends(values: np.ndarray) -> tuple[float, float]:
    """Means of the first and the last tenth of a series (at least one point each)."""
    k = max(1, len(values) // 10)
    return float(values[:k].mean()), float(values[-k:].mean())


def rl_summary_table(runs: list[RLRun]) -> str:
    """Markdown: per run, its last step, reward and entropy at the start and the end of training, and
    held-out Pass@1 at the first evaluation, the last, and the best with its step."""
    benchmarks = list(dict.fromkeys(b for r in runs for b in r.benchmarks))
    head = ["Run", "Steps", "Reward (start → end)", "Entropy (start → end)"]
    head += [f"{b} Pass@1 (first → last; best @ step)" for b in benchmarks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [r.name, str(max(row["step"] for row in r.rows))]
        for key in ("reward_mean", "entropy"):
            _, v = r.series(key)
            cells.append("–" if not len(v) else "{:.3f} → {:.3f}".format(*_ends(v)))
        for b in benchmarks:
            steps, v = r.series(f"eval/{b}/pass@1")
            best = int(np.argmax(v)) if len(v) else None
            cells.append("–" if best is None else f"{_pct(v[0])} → {_pct(v[-1])}; {_pct(v[best])} @ {int(steps[best])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


DIVERSITY_PANELS = ("diversity/distinct_answers", "diversity/distinct_paths", "salvage/successes")
"""Drawn beside reward and entropy when a run logged them (`oxa rl`'s group diversity; SCOPE's salvage)."""


def rl_section(runs: list[RLRun], out: Path, *, smooth: int = 1) -> list[str]:
    """The markdown (and ``rl_curves.png``) of the RL runs."""
    logged = [k for k in DIVERSITY_PANELS if any(len(r.series(k)[0]) for r in runs)]
    png = plot_rl_curves(runs, out / "rl_curves.png", smooth=smooth, metrics=("reward_mean", "entropy", *logged))
    return ["## RL training", "", "RL runs: " + ", ".join(f"`{r.name}` ({r.path})" for r in runs), "",
            rl_summary_table(runs), "",
            f"![RL curves]({png.name})", "",
            "Reward: mean over the step's rollouts; entropy: token mean of the pre-update policy's entropy at the "
            "rollout temperature over the step's response tokens (verl's); start / end: means over the first / last "
            "tenth of the logged steps. Pass@1: held-out evaluation during training."
            + (" Diversity: distinct final answers and reasoning paths per group of sampled rollouts, averaged over "
               "the step's groups; salvaged: failed rollouts SCOPE turned into correct ones." if logged else ""), ""]


class ReportConfig(StageConfig):
    """Settings of ``oxa report``."""

    runs: list[Path] = Field(description="run directories, each holding an `oxa eval` results.json",
                             json_schema_extra=cli(positional=True))
    output: Path = Field(Path("report"), description="directory for report.md and its PNGs", json_schema_extra=cli("-o"))
    names: list[str] | None = Field(None, description="display name per run, in order (repeatable)",
                                    json_schema_extra=cli("--name"))
    baseline: Path | None = Field(None, description="run (directory or name) whose pass counts define the difficulty "
                                                    "buckets (Figure 2d)")
    title: str = Field("OXA run comparison", description="report title")
    rl_smooth: int = Field(1, ge=1, description="RL curves: plot the trailing mean of this many logged steps "
                           "(1: the raw values)")
    bootstrap: int = Field(10000, ge=100, description="claims: bootstrap replicates (seeds and problems resampled)")
    confidence: float = Field(0.95, gt=0, lt=1, description="claims: confidence level of the intervals")


def report_file(cfg: ReportConfig) -> Path:
    return build_report(cfg.runs, cfg.output, names=cfg.names, baseline=cfg.baseline, title=cfg.title,
                        rl_smooth=cfg.rl_smooth, bootstrap=cfg.bootstrap, confidence=cfg.confidence)


def _has_results(path: Path) -> bool:
    return path.is_file() or bool(sorted(path.glob("results.json")) or sorted(path.glob("*/results.json")))


def build_report(run_dirs: list[str | Path], out_dir: str | Path, *, names: list[str] | None = None,
                 baseline: str | Path | None = None, title: str = "OXA run comparison", rl_smooth: int = 1,
                 bootstrap: int = 10000, confidence: float = 0.95) -> Path:
    """Write ``out_dir/report.md`` and its PNGs; returns the markdown path."""
    if names and len(names) != len(run_dirs):
        raise OxaError(f"{len(names)} --name values for {len(run_dirs)} runs")
    runs, rl_runs = [], []
    for i, d in enumerate(run_dirs):
        name = names[i] if names else None
        metrics = find_rl_metrics(d)
        if metrics is not None:
            rl_runs.append(load_rl_run(metrics, name or Path(d).name))
        if metrics is None or _has_results(Path(d)):
            runs.append(load_run(d, name))
    seeds = _group_seeds(runs)
    _group_seeds(rl_runs)
    out = Path(out_dir)
    md = [f"# {title}", ""]
    if any(role(name).removesuffix(RL) in ROLES for name in seeds) and len(seeds) > 1:
        md += claims_section(seeds, bootstrap=bootstrap, confidence=confidence)
    if runs:
        md += _eval_sections(runs, out, baseline)
    if rl_runs:
        md += rl_section(rl_runs, out, smooth=rl_smooth)
    path = out / "report.md"
    write_text(path, "\n".join(md))
    return path


def _group_seeds(runs: list) -> dict[str, list]:
    """Name -> its runs (one per seed, in the order given); runs sharing a name are renamed NAME/s1, ..."""
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.name, []).append(r)
    for name, group in groups.items():
        if len(group) > 1:
            if len({r.path.resolve() for r in group}) < len(group):
                raise OxaError(f"run {name!r} is given twice")
            for i, r in enumerate(group, start=1):
                r.name = f"{name}/s{i}"
    return groups


def claims_section(seeds: dict[str, list[Run]], *, bootstrap: int, confidence: float) -> list[str]:
    """Markdown: each method's mean ± sd over seeds, and the paper's four claims with bootstrap intervals."""
    methods = {name: [SeedRun(r.results, _entropy_table(r)) for r in group] for name, group in seeds.items()}
    counts = {len(v) for v in methods.values()}
    if len(counts) > 1:
        raise OxaError("methods were run under different numbers of seeds: "
                       + ", ".join(f"{k} {len(v)}" for k, v in methods.items()))
    claims = evaluate_claims(methods, iterations=bootstrap, confidence=confidence)
    n = counts.pop()
    return ["## Over seeds", "", summary_table(methods), "",
            f"Mean ± sample standard deviation over {n} seed{'s' * (n > 1)} (Avg.: the unweighted mean over "
            "benchmarks; entropy: of the raw policy, nats per token).", "",
            "## The paper's claims", "", claims_markdown(claims), "",
            f"A − B in points (entropy: nats); the interval is the {confidence:.0%} percentile interval of a paired "
            f"bootstrap ({bootstrap} replicates) that resamples seeds and, within each, problems per benchmark "
            "(each benchmark weighted equally). A part holds when the interval lies above zero, does not hold when "
            "it lies below, and is undecided otherwise; intervals are not corrected for the number of parts."
            + (" With one seed only problems are resampled: seed-to-seed variation is not in the interval."
               if n == 1 else ""), ""]


def _entropy_table(run: Run):
    """Per-problem entropy from the samples.jsonl beside the run's results.json (None without it)."""
    samples = (run.results_file or run.path / "results.json").parent / "samples.jsonl"
    if not samples.exists():
        return None
    from oxa.io import read_records

    return entropy_table(read_records(samples))


def _eval_sections(runs: list[Run], out: Path, baseline: str | Path | None) -> list[str]:
    """The markdown (and PNGs) of the evaluation runs: tables, Pass@k, entropy, difficulty, PPL."""
    base = None
    if baseline is not None:
        base = next((r for r in runs if r.path == Path(baseline) or r.name == str(baseline)), None) or load_run(baseline)
    md = ["Runs: " + ", ".join(f"`{r.name}` ({r.path}, model `{r.results.get('model')}`)" for r in runs), "",
          "## Pass@1 and Pass@k (%)", "", comparison_table(runs), "",
          "Pass@1 is the mean correctness over all samples; Pass@k is the unbiased estimator at k = n samples "
          "per problem; Avg. is the unweighted mean over benchmarks.", "",
          "## Pass@k curves", "", f"![Pass@k]({plot_passk(runs, out / 'passk.png').name})", "",
          "## Policy entropy and response length", "", details_table(runs), "",
          f"![entropy]({plot_entropy(runs, out / 'entropy.png').name})", "",
          "Entropy: token mean over the sampled responses of the raw policy's next-token entropy (verl's); "
          "sampling entropy: of the temperature / top-p distribution sampled from.", ""]
    gains = difficulty_gains(runs, base)
    if gains:
        base_name = base.name if base else "reference"
        md += ["## Gains by difficulty", "", f"![difficulty]({plot_difficulty(gains, out / 'difficulty.png', base_name).name})", ""]
        for bench, by_run in gains.items():
            md += [f"**{bench}** (buckets of {base_name}'s pass counts):", "",
                   "| Method | " + " | ".join(f"{row['bucket']} (n={row['problems']})" for row in next(iter(by_run.values()))) + " |",
                   "|---|" + "---|" * len(next(iter(by_run.values())))]
            md += [f"| {name} | " + " | ".join("–" if row["gain"] is None else f"{100 * row['gain']:+.1f}" for row in rows) + " |"
                   for name, rows in by_run.items()]
            md.append("")
    plots = [(r, h) for r in runs for h in r.histograms]
    if plots:
        md += ["## PPL distributions of the selected data", ""]
        for r, h in plots:
            stem = h.name.removesuffix(".hist.json")
            png = plot_selection_histogram(h, out / f"ppl_{_slug(r.name)}_{_slug(stem)}.png", f"{r.name}: {stem}")
            md += [f"![{r.name} {stem}]({png.name})", ""]
    return md


def console_table(results: dict):
    """A rich table of one results.json: Pass@1, Pass@k curve, entropy and length per benchmark."""
    from rich.table import Table

    table = Table(title=f"oxa eval: {results.get('model')}")
    for col in ("benchmark", "problems x n", "Pass@1", "Pass@k", "entropy", "mean tokens"):
        table.add_column(col)
    for name, m in results["benchmarks"].items():
        curve = " ".join(f"@{k}={_pct(v)}" for k, v in m["pass@k"].items())
        table.add_row(name, f"{m['problems']} x {m['samples_per_problem']}", _pct(m["pass@1"]), curve,
                      "–" if m["entropy"] is None else f"{m['entropy']:.3f}", f"{m['mean_response_tokens']:.1f}")
    avg = results.get("average")
    if avg and avg["benchmarks"] > 1:
        table.add_row("Avg.", "", _pct(avg["pass@1"]), f"@n={_pct(avg['pass@n'])}", "", "")
    return table
