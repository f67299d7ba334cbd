"""`oxa report` draws group diversity (and SCOPE's salvaged rollouts) beside reward and Pass@1 when runs logged them."""

from __future__ import annotations

import json

import matplotlib
import numpy as np

from oxa.report import build_report

matplotlib.use("Agg")


def write_run(path, rows) -> None:
    path.mkdir(parents=True)
    (path / "rl_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def row(step: int, scope: bool) -> dict:
    out = {"step": step, "reward_mean": 0.1 * step, "entropy": 0.5, "diversity/distinct_answers": 2.0 + step,
           "diversity/distinct_paths": 1.0 + 0.5 * step}
    return out | ({"salvage/successes": float(step)} if scope else {})


def test_diversity_and_salvage_panels_beside_reward_and_pass1(tmp_path, saved_figures):
    write_run(tmp_path / "grpo", [row(s, False) for s in (1, 2, 3)] + [{"step": 3, "eval/synth/pass@1": 0.4}])
    write_run(tmp_path / "scope", [row(s, True) for s in (1, 2, 3)] + [{"step": 3, "eval/synth/pass@1": 0.5}])
    md = build_report([tmp_path / "grpo", tmp_path / "scope"], tmp_path / "rep").read_text()
    assert "Diversity: distinct final answers and reasoning paths per group" in md
    (fig,) = [f for f in saved_figures if any(ax.get_title() == "Distinct reasoning paths per group" for ax in f.axes)]
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert list(axes) == ["Training reward (mean)", "Policy entropy (nats / token)", "Distinct final answers per group",
                          "Distinct reasoning paths per group", "Failed rollouts salvaged (per step)",
                          "Held-out Pass@1 (%): synth"]
    for title, key in (("Distinct final answers per group", "diversity/distinct_answers"),
                       ("Distinct reasoning paths per group", "diversity/distinct_paths")):
        lines = {line.get_label(): line for line in axes[title].get_lines()}
        for name, scope in (("grpo", False), ("scope", True)):
            np.testing.assert_allclose(lines[name].get_ydata(), [row(s, scope)[key] for s in (1, 2, 3)])
    salvaged = {line.get_label(): line for line in axes["Failed rollouts salvaged (per step)"].get_lines()}
    assert list(salvaged) == ["scope"] and list(salvaged["scope"].get_ydata()) == [1.0, 2.0, 3.0]
