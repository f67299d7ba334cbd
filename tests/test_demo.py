"""`oxa demo --quick` end to end in a temporary directory, and stage reuse on a re-run."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from conftest import drawn_histograms, figure_titled
from safetensors.torch import load_file
from typer.testing import CliRunner

from oxa.cli import app
from oxa.io import read_records


@pytest.mark.slow
def test_demo_quick_end_to_end_and_reuse(tmp_path, synth_base_model, monkeypatch, saved_figures):
    cache, model_dir = synth_base_model
    monkeypatch.chdir(tmp_path)  # a relative --out, as `oxa demo`'s default runs/demo is
    out = tmp_path / "run"
    args = ["demo", "--quick", "--out", "run", "--cache", str(cache), "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["stages"]
    assert list(stages) == ["world", "base_model", "verify", "score", "select", "distill", "train", "evaluate", "report"]
    assert stages["base_model"]["model"] == str(model_dir)  # the cached model, not a new one

    teacher = read_records(out / "world" / "teacher.jsonl")
    verified = read_records(out / "data" / "verified.jsonl")
    assert len(verified) == len(teacher) == stages["world"]["counts"]["teacher"]
    assert all(r["correct"] == (r["planted_error"] is None) == (r["first_error"] is None) for r in verified)
    scored = read_records(out / "data" / "scored.jsonl")
    assert all(r["ppl"] > 1.0 and r["n_tokens"] > 0 for r in scored)

    # the lowest-PPL selection is, independently recomputed, the n queries whose best correct PPL is lowest
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    for r in scored:
        if r["correct"]:
            best[r["query_id"]] = min(best[r["query_id"]], r["ppl"])
    n = stages["select"]["params"]["n"]
    lowest = read_records(out / "data" / "ce_lowest.jsonl")
    assert sorted(r["ppl"] for r in lowest) == sorted(best.values())[:n]
    for method in ("gaussian", "random"):
        chosen = read_records(out / "data" / f"ce_{method}.jsonl")
        assert 0 < len(chosen) <= n and all(r["correct"] for r in chosen)
        assert len({r["query_id"] for r in chosen}) == len(chosen)  # one per query

    errors = read_records(out / "data" / "ul_errors.jsonl")
    assert errors and all(r["correct"] is False and r["ppl"] >= 1.2 for r in errors)
    base_weights = load_file(model_dir / "model.safetensors")
    for name, path in stages["train"]["models"].items():
        assert path == str(out / "models" / name)
        weights = load_file(out / "models" / name / "model.safetensors")  # fine-tuned from the base: same shapes,
        assert weights.keys() == base_weights.keys()  # other values
        assert any(not torch.equal(weights[k], base_weights[k]) for k in weights), name

    eval_report = (out / "eval" / "report.md").read_text()
    for name in ("base", "sft_lp", "sft", "oxa_mle", "oxa_full"):
        samples = read_records(out / "eval" / name / "samples.jsonl")
        assert len(samples) == 3 * 2 * 2  # 3 difficulties x 2 problems x n = 2 in the quick size
        pass1 = sum(s["correct"] for s in samples) / len(samples)
        assert stages["evaluate"]["counts"][name]["pass@1"] == round(pass1, 4)
        row = next(line for line in eval_report.splitlines() if line.startswith(f"| {name} |"))
        assert row.split("|")[-3].strip() == f"{100 * pass1:.1f}"  # Avg. Pass@1 (equal-sized benchmarks)

    report = (out / "report.md").read_text()
    assert "| gaussian |" in report and "median PPL" in report
    # the selections figure draws the verified pool and each selection's PPLs, as in the files, binned as selected
    figure = figure_titled(saved_figures, "PPL of the selections")
    drawn = drawn_histograms(figure.axes[0])
    edges = np.asarray(drawn["pool (verified)"][1])
    params = stages["select"]["params"]
    assert edges[0] == pytest.approx(params["ppl_min"]) and edges[-1] == pytest.approx(params["ppl_max"])
    assert np.diff(edges) == pytest.approx(np.full(len(edges) - 1, params["bin_width"]))
    expected = {"pool (verified)": [r["ppl"] for r in scored if r["correct"] and r["ppl"] is not None],
                **{m: [r["ppl"] for r in read_records(out / "data" / f"ce_{m}.jsonl")] for m in ("gaussian", "lowest", "random")}}
    assert sorted(drawn) == sorted(expected)
    for label, ppls in expected.items():
        assert drawn[label][0] == np.histogram(ppls, bins=edges)[0].tolist(), label

    # a re-run reuses every stage; changing the selection settings redoes select and what follows it
    # (here with fine-tuning switched off, to keep the test short)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert all(s["reused"] for s in json.loads((out / "manifest.json").read_text())["stages"].values())
    # new fine-tuning settings redo the runs and their evaluation (over the old runs' samples)
    lr = tmp_path / "lr.yaml"
    lr.write_text("train:\n  learning_rate: 0.0005\n")
    fourth = CliRunner().invoke(app, args + ["--config", str(lr)])
    assert fourth.exit_code == 0, fourth.output
    stages4 = json.loads((out / "manifest.json").read_text())["stages"]
    assert [name for name, s in stages4.items() if not s["reused"]] == ["distill", "train", "evaluate", "report"]
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("select:\n  share: 0.25\n  mu: null\n  sigma: null\n  ppl_min: null\n  ppl_max: null\n  bin_width: null\n"
                   "train:\n  enabled: false\n")
    third = CliRunner().invoke(app, args + ["--config", str(cfg)])
    assert third.exit_code == 0, third.output
    stages3 = json.loads((out / "manifest.json").read_text())["stages"]
    assert [name for name, s in stages3.items() if not s["reused"]] == ["select", "report"]
    assert stages3["select"]["params"]["n"] < n


def test_configs_demo_yaml_spells_out_the_defaults():
    from pathlib import Path

    from oxa.config import load_yaml, validate
    from oxa.demo import DemoConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    from_file, default = validate(DemoConfig, load_yaml(path), source=str(path)), DemoConfig()
    assert from_file.world_config() == default.world_config()
    assert from_file.base_config().key() == default.base_config().key()
    assert from_file.select_config() == default.select_config() and from_file.train == default.train
    assert from_file.eval_config() == default.eval_config()
    assert from_file.out == default.out and from_file.quick is False
