"""`oxa report` RL curves: what is drawn is what the runs logged in rl_metrics.jsonl."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

from oxa.errors import OxaError
from oxa.report import build_report, load_rl_run, rl_curves_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def train_row(step: int, reward: float, entropy: float) -> dict:
    """A training row with the keys `oxa rl` writes (INTERFACES.md section 3)."""
    return {"step": step, "reward_mean": reward, "reward_std": 0.4, "frac_zero_std_groups": 0.25, "entropy": entropy,
            "kl": 0.001 * step, "clip_fraction": 0.0, "cov_selected_tokens": 0.0, "response_length": 120.0 + step,
            "truncated_share": 0.0, "seconds_generation": 1.0, "seconds_grading": 0.1, "seconds_update": 0.5,
            "lr": 2e-6, "reward_status/correct": int(8 * reward), "reward_status/incorrect": 8 - int(8 * reward)}


SFT = [train_row(s, 0.1 + 0.02 * s, 0.50 - 0.01 * s) for s in range(1, 11)] + [
    {"step": 0, "eval/aime24/pass@1": 0.20, "eval/aime24/pass@8": 0.4, "eval/synth/pass@1": 0.5},
    {"step": 5, "eval/aime24/pass@1": 0.30, "eval/synth/pass@1": 0.55},
    {"step": 10, "eval/aime24/pass@1": 0.25, "eval/synth/pass@1": 0.60}]
OXA = [train_row(s, 0.2 + 0.03 * s, 0.90 - 0.005 * s) for s in range(1, 9)] + [
    {"step": 0, "eval/aime24/pass@1": 0.35}, {"step": 8, "eval/aime24/pass@1": 0.45}]


def write_run(path, rows, tail: str = "") -> None:
    path.mkdir(parents=True)
    (path / "rl_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")


@pytest.fixture
def rl_runs(tmp_path):
    write_run(tmp_path / "sft", SFT)
    # a resumed run logged step 4 again (the later row wins) and was killed while writing its last line
    write_run(tmp_path / "oxa", OXA[:4] + [train_row(4, 0.99, 0.1), train_row(4, 0.32, 0.88)] + OXA[4:],
              tail='{"step": 9, "reward_me')
    return tmp_path


def expected(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = {}
    for r in rows:
        if key in r:
            points[r["step"]] = r[key]
    return sorted(points), [points[s] for s in sorted(points)]


def test_figure_lines_are_the_logged_metrics(rl_runs):
    runs = [load_rl_run(rl_runs / "sft", "SFT"), load_rl_run(rl_runs / "oxa")]
    oxa_rows = OXA[:4] + [train_row(4, 0.32, 0.88)] + OXA[4:]
    fig = rl_curves_figure(runs)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Training reward (mean)", "Policy entropy (nats / token)",
                                               "Held-out Pass@1 (%): aime24", "Held-out Pass@1 (%): synth"]
    for ax, key, scale in zip(axes, ["reward_mean", "entropy", "eval/aime24/pass@1", "eval/synth/pass@1"], [1, 1, 100, 100]):
        drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
        for name, rows in (("SFT", SFT), ("oxa", oxa_rows)):
            steps, values = expected(rows, key)
            if not steps:  # oxa has no synth evaluation: no line
                assert name not in drawn
                continue
            assert drawn[name][0] == steps
            np.testing.assert_allclose(drawn[name][1], [scale * v for v in values])
        assert [line.get_color() for line in ax.get_lines()][:1] == ["C0"]  # SFT keeps its colour in every panel
    assert expected(oxa_rows, "reward_mean")[1][3] == 0.32  # the repeated step: its last row
    plt.close(fig)


def test_smoothing_is_a_trailing_mean(rl_runs):
    run = load_rl_run(rl_runs / "sft")
    fig = rl_curves_figure([run], metrics=("entropy", "response_length"), benchmarks=[], smooth=3)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Policy entropy (nats / token)", "Response length (tokens)"]
    _, values = expected(SFT, "entropy")
    trailing = [sum(values[max(0, i - 2): i + 1]) / len(values[max(0, i - 2): i + 1]) for i in range(len(values))]
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), trailing)
    plt.close(fig)


def test_report_with_rl_runs(rl_runs, tmp_path):
    md = build_report([rl_runs / "sft", rl_runs / "oxa"], tmp_path / "rep", names=["SFT", "OXA"]).read_text()
    assert "## Pass@1 and Pass@k" not in md  # no evaluation runs given
    assert "![RL curves](rl_curves.png)" in md and (tmp_path / "rep" / "rl_curves.png").stat().st_size > 5000
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines()
            if line.startswith(("| SFT ", "| OXA "))}
    # start / end: means of the first / last tenth (one row here); Pass@1: first, last, best @ step
    assert rows["SFT"] == ["10", f"{0.12:.3f} → {0.30:.3f}", f"{0.49:.3f} → {0.40:.3f}", "20.0 → 25.0; 30.0 @ 5",
                           "50.0 → 60.0; 60.0 @ 10"]
    assert rows["OXA"] == ["8", f"{0.23:.3f} → {0.44:.3f}", f"{0.895:.3f} → {0.860:.3f}", "35.0 → 45.0; 45.0 @ 8", "–"]


def test_rl_run_with_eval_results_gets_both_sections(rl_runs, tmp_path):
    from test_report import bench

    from oxa.evaluation import average

    benches = {"aime24": bench([1, 3, 6, 8], 8, 1.3)}
    (rl_runs / "sft" / "results.json").write_text(json.dumps({"model": "m", "benchmarks": benches,
                                                              "average": average(benches)}))
    md = build_report([rl_runs / "sft"], tmp_path / "rep").read_text()
    assert "## Pass@1 and Pass@k" in md and "## RL training" in md


def test_bad_metrics_files(tmp_path):
    write_run(tmp_path / "a", SFT[:2], tail="not json\n" + json.dumps(SFT[2]) + "\n")
    with pytest.raises(OxaError, match=r"a/rl_metrics\.jsonl:3: malformed JSON"):
        load_rl_run(tmp_path / "a")
    write_run(tmp_path / "b", [{"reward_mean": 1.0}])
    with pytest.raises(OxaError, match=r"b/rl_metrics\.jsonl:1: .*integer 'step'"):
        load_rl_run(tmp_path / "b")
    (tmp_path / "c").mkdir()
    with pytest.raises(OxaError, match="no rl_metrics.jsonl"):
        load_rl_run(tmp_path / "c")
    with pytest.raises(OxaError, match="no results.json"):
        build_report([tmp_path / "c"], tmp_path / "rep")
