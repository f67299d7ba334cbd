"""`oxa report` on two hand-made run directories: the table's numbers, the plots, the difficulty gains."""

from __future__ import annotations

import json
from fractions import Fraction
from math import comb

import pytest
from conftest import drawn_histograms, figure_titled

from oxa.errors import OxaError
from oxa.evaluation import average, pass_at_k
from oxa.report import build_report


def bench(counts: list[int], n: int, entropy: float) -> dict:
    per = [{"id": f"q{i}", "n": n, "correct": c} for i, c in enumerate(counts)]
    ks = [k for k in (1, 2, 4, 8) if k <= n]
    return {"problems": len(counts), "samples_per_problem": n, "pass@1": sum(counts) / (n * len(counts)),
            "pass@k": {str(k): sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks},
            "mean_response_tokens": 100.0, "entropy": entropy, "sampling_entropy": entropy / 2,
            "finish_reasons": {"stop": n * len(counts) - 1, "length": 1}, "per_problem": per}


def make_run(path, model, benches):
    path.mkdir(parents=True)
    results = {"model": model, "benchmarks": benches, "average": average(benches)}
    (path / "results.json").write_text(json.dumps(results))
    return results


@pytest.fixture
def runs(tmp_path):
    base = make_run(tmp_path / "base", "base", {"aime24": bench([0, 1, 4, 8], 8, 0.9), "minerva": bench([0, 2], 4, 0.8)})
    oxa = make_run(tmp_path / "oxa", "oxa", {"aime24": bench([1, 3, 6, 8], 8, 1.3), "minerva": bench([1, 4], 4, 1.1)})
    hist = {"method": "gaussian", "bins": [{"lo": 1.0 + 0.5 * i, "hi": 1.5 + 0.5 * i, "pool": 10 * (i + 1),
                                            "selected": i, "target": i + 1} for i in range(6)]}
    (tmp_path / "oxa" / "ce_set.hist.json").write_text(json.dumps(hist))
    return tmp_path, base, oxa


def test_table_numbers(runs):
    root, base, oxa = runs
    md_path = build_report([root / "base", root / "oxa"], root / "rep", baseline=root / "base")
    md = md_path.read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.split("## Pass@k curves")[0].splitlines() if line.startswith(("| base ", "| oxa "))}
    # columns: aime24 Pass@1, Pass@8, minerva Pass@1, Pass@4, Avg. Pass@1, Avg. Pass@k
    o = oxa["benchmarks"]
    assert rows["oxa"][:6] == [f"{100 * o['aime24']['pass@1']:.1f}", f"{100 * o['aime24']['pass@k']['8']:.1f}",
                               f"{100 * o['minerva']['pass@1']:.1f}", f"{100 * o['minerva']['pass@k']['4']:.1f}",
                               f"{100 * (18 / 32 + 5 / 8) / 2:.1f}", "100.0"]
    assert rows["base"][0] == f"{100 * 13 / 32:.1f}"
    assert "| aime24 Pass@1 | aime24 Pass@8 | minerva Pass@1 | minerva Pass@4 |" in md
    for png in ("passk.png", "entropy.png", "difficulty.png", "ppl_oxa_ce_set.png"):
        assert f"]({png})" in md
    # aime24 gains by base's pass count (n=8): bucket 0 -> q0 1/8; 1-4 -> q1,q2 (3/8 + 6/8)/2 - (1/8 + 4/8)/2
    aime_row = next(line for line in md.split("**aime24**")[1].splitlines() if line.startswith("| oxa"))
    assert aime_row.split("|")[2].strip() == f"{100 * 1 / 8:+.1f}"
    assert aime_row.split("|")[3].strip() == f"{100 * ((3 / 8 + 6 / 8) / 2 - (1 / 8 + 4 / 8) / 2):+.1f}"


def exact_pass_at_k(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))


def test_plots_draw_the_numbers_of_the_runs(runs, saved_figures):
    """Each figure's lines and bars, read back from matplotlib, against numbers computed here from the counts."""
    from matplotlib.image import imread

    root, _, _ = runs
    build_report([root / "base", root / "oxa"], root / "rep", baseline=root / "base")
    counts = {"base": {"aime24": ([0, 1, 4, 8], 8), "minerva": ([0, 2], 4)},
              "oxa": {"aime24": ([1, 3, 6, 8], 8), "minerva": ([1, 4], 4)}}

    def curve(run, bench, ks):
        c, n = counts[run][bench]
        return [100 * sum(exact_pass_at_k(n, x, k) for x in c) / len(c) for k in ks]

    passk = figure_titled(saved_figures, "Pass@k by method")
    panels = {ax.get_title(): {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
              for ax in passk.axes if ax.get_visible()}
    assert list(panels) == ["aime24", "minerva", "Avg."]
    for run in ("base", "oxa"):
        assert panels["aime24"][run][0] == [1, 2, 4, 8]
        assert panels["aime24"][run][1] == pytest.approx(curve(run, "aime24", [1, 2, 4, 8]))
        assert panels["minerva"][run][1] == pytest.approx(curve(run, "minerva", [1, 2, 4]))
        # the average over both benchmarks at the k they share
        both = [(a + m) / 2 for a, m in zip(curve(run, "aime24", [1, 2, 4]), curve(run, "minerva", [1, 2, 4]))]
        assert panels["Avg."][run] == ([1, 2, 4], pytest.approx(both))

    entropy = figure_titled(saved_figures, "Policy entropy and response length by method")
    ent_ax, len_ax = entropy.axes
    assert [bar.get_height() for bars in ent_ax.containers for bar in bars] == pytest.approx([0.9, 0.8, 1.3, 1.1])
    assert [[bar.get_height() for bar in bars] for bars in len_ax.containers] == [[100.0, 100.0], [100.0, 100.0]]
    assert [bars.get_label() for bars in ent_ax.containers] == ["base", "oxa"]
    assert [t.get_text() for t in ent_ax.get_xticklabels()] == ["aime24", "minerva"]

    # gains of oxa over base per base pass-count bucket; empty buckets are drawn at 0 without a label
    difficulty = figure_titled(saved_figures, "Gains over base by problem difficulty")
    expected = {"aime24": ([1 / 8, (3 / 8 + 6 / 8) / 2 - (1 / 8 + 4 / 8) / 2, None, 0.0], ["0", "1-4", "5-7", "8"]),
                "minerva": ([1 / 4, 4 / 4 - 2 / 4, None], ["0", "1-3", "4"])}
    for ax in [ax for ax in difficulty.axes if ax.get_visible()]:
        gains, buckets = expected[ax.get_title()]
        (bars,) = ax.containers
        assert [bar.get_height() for bar in bars] == pytest.approx([0.0 if g is None else 100 * g for g in gains])
        assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == buckets

    hist = figure_titled(saved_figures, "oxa: ce_set")
    drawn = drawn_histograms(hist.axes[0])
    edges = [1.0 + 0.5 * i for i in range(7)]
    assert drawn == {"pool": ([10.0 * (i + 1) for i in range(6)], edges), "selected": ([float(i) for i in range(6)], edges),
                     "target": ([float(i + 1) for i in range(6)], edges)}

    for png in ("passk.png", "entropy.png", "difficulty.png", "ppl_oxa_ce_set.png"):
        height, width = imread(root / "rep" / png).shape[:2]
        assert height > 100 and width > 100


def test_bad_run_dirs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OxaError, match="no results.json"):
        build_report([tmp_path / "empty"], tmp_path / "rep")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{\"model\": 1}")
    with pytest.raises(OxaError, match="not an `oxa eval` results.json"):
        build_report([tmp_path / "bad"], tmp_path / "rep")


def test_cli_report(runs):
    from typer.testing import CliRunner

    from oxa.cli import app

    root, _, _ = runs
    result = CliRunner().invoke(app, ["report", str(root / "base"), str(root / "oxa"), "-o", str(root / "r"),
                                      "--name", "Base", "--name", "OXA"])
    assert result.exit_code == 0, result.output
    assert "| OXA |" in (root / "r" / "report.md").read_text()
    cfg = root / "report.yaml"  # every setting also from a config file; flags override it
    cfg.write_text(f"runs: [{root / 'base'}, {root / 'oxa'}]\nbaseline: {root / 'base'}\ntitle: From YAML\n")
    result = CliRunner().invoke(app, ["report", "--config", str(cfg), "-o", str(root / "r2"), "--title", "Flag"])
    assert result.exit_code == 0, result.output
    text = (root / "r2" / "report.md").read_text()
    assert text.startswith("# Flag") and "## Gains by difficulty" in text
