"""`oxa demo --quick` end to end in a temporary directory, and stage reuse on a re-run."""

from __future__ import annotations

import importlib.metadata
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import drawn_histograms, figure_titled
from safetensors.torch import load_file
from typer.testing import CliRunner

from oxa.cli import app
from oxa.io import read_records


TRAIN_RUNS = ("sft_lp", "sft", "oxa_mle", "oxa_full")
STAGES = ["world", "base_model", "verify", "score", "select_gaussian", "select_lowest", "select_random", "distill",
          *(f"train_{r}" for r in TRAIN_RUNS), *(f"rl_{r}" for r in TRAIN_RUNS), "eval_base",
          *(f"eval_{r}" for r in TRAIN_RUNS), *(f"eval_rl_{r}" for r in TRAIN_RUNS), "report", "demo_report"]


def _changed(out) -> list[str]:
    return [name for name, s in json.loads((out / "manifest.json").read_text())["stages"].items() if not s["reused"]]


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
    assert list(stages) == STAGES
    assert stages["base_model"]["model"] == str(model_dir)  # the cached model, not a new one
    assert manifest["versions"]["torch"] == importlib.metadata.version("torch")

    teacher = read_records(out / "world" / "teacher.jsonl")
    verified = read_records(out / "verify" / "verify.jsonl")
    assert len(verified) == len(teacher) == stages["world"]["counts"]["teacher"]
    assert all(r["correct"] == (r["planted_error"] is None) for r in verified)
    scored = read_records(out / "score" / "score.jsonl")
    assert all(r["ppl"] > 1.0 and r["n_tokens"] > 0 for r in scored)

    # the lowest-PPL selection is, independently recomputed, the n queries whose best correct PPL is lowest
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    for r in scored:
        if r["correct"]:
            best[r["query_id"]] = min(best[r["query_id"]], r["ppl"])
    n = stages["select_lowest"]["settings"]["n"]
    lowest = read_records(out / "select_lowest" / "select_lowest.jsonl")
    assert sorted(r["ppl"] for r in lowest) == sorted(best.values())[:n]
    for method in ("gaussian", "random"):
        chosen = read_records(out / f"select_{method}" / f"select_{method}.jsonl")
        assert 0 < len(chosen) <= n and all(r["correct"] for r in chosen)
        assert len({r["query_id"] for r in chosen}) == len(chosen)  # one per query

    errors = read_records(out / "distill" / "ul_set.jsonl")
    assert errors and all(r["correct"] is False and r["ppl"] >= 1.2 for r in errors)
    assert stages["train_oxa_full"]["settings"]["ul_data"] == str(out / "distill" / "ul_set.jsonl")
    base_weights = load_file(model_dir / "model.safetensors")
    for name in TRAIN_RUNS:
        assert stages[f"train_{name}"]["output"] == str(out / f"train_{name}")
        weights = load_file(out / f"train_{name}" / "model.safetensors")  # fine-tuned from the base: same shapes,
        assert weights.keys() == base_weights.keys()  # other values
        assert any(not torch.equal(weights[k], base_weights[k]) for k in weights), name
        rl = load_file(out / f"rl_{name}" / "model.safetensors")  # GRPO moved it from where it started
        assert stages[f"rl_{name}"]["settings"]["model"] == str(out / f"train_{name}")
        assert any(not torch.equal(rl[k], weights[k]) for k in weights), name

    eval_report = (out / "report" / "report.md").read_text()
    assert "## The paper's claims" in eval_report  # the report's run names are the paper's methods (X_rl: after GRPO)
    table = eval_report[eval_report.index("## Pass@1 and Pass@k"):]
    for name in ("base", *TRAIN_RUNS, *(f"rl_{r}" for r in TRAIN_RUNS)):
        samples = read_records(out / f"eval_{name}" / "samples.jsonl")
        assert len(samples) == 3 * 2 * 2  # 3 difficulties x 2 problems x n = 2 in the quick size
        pass1 = sum(s["correct"] for s in samples) / len(samples)
        assert stages[f"eval_{name}"]["counts"]["pass@1"] == round(pass1, 4)
        shown = f"{name.removeprefix('rl_')}_rl" if name.startswith("rl_") else name
        row = next(line for line in table.splitlines() if line.startswith(f"| {shown} |"))
        assert row.split("|")[-3].strip() == f"{100 * pass1:.1f}"  # Avg. Pass@1 (equal-sized benchmarks)

    # the GRPO runs' curves: held-out Pass@1 during RL, first and last, as their evaluations' samples say
    rl_part = eval_report[eval_report.index("## RL training"):]
    assert (out / "report" / "rl_curves.png").stat().st_size > 0
    for name, label in zip(TRAIN_RUNS, ("SFT_LP", "SFT", "OXA_MLE", "OXA_Full")):
        row = next(line for line in rl_part.splitlines() if line.startswith(f"| GRPO from {label} |"))
        first, last = (read_records(out / f"rl_{name}" / "eval" / f"step-{step:06d}" / "samples.jsonl")
                       for step in (0, 1))
        easy = [[s["correct"] for s in samples if s["benchmark"] == "synth-easy"] for samples in (first, last)]
        assert len(easy[0]) == len(easy[1]) == 2 * 2  # the eval stages' problems and samples
        cell = row.split("|")[5].strip()  # synth-easy Pass@1 (first → last; best @ step)
        assert cell.startswith(" → ".join(f"{100 * sum(c) / len(c):.1f}" for c in easy)), cell

    report = (out / "demo_report" / "report.md").read_text()
    assert "| gaussian |" in report and "median PPL" in report and "| rl_oxa_full |" in report
    # the selections figure draws the verified pool and each selection's PPLs, as in the files, binned as selected
    figure = figure_titled(saved_figures, "PPL of the selections")
    drawn = drawn_histograms(figure.axes[0])
    edges = np.asarray(drawn["pool (verified)"][1])
    params = stages["select_gaussian"]["settings"]
    assert edges[0] == pytest.approx(params["ppl_min"]) and edges[-1] == pytest.approx(params["ppl_max"])
    assert np.diff(edges) == pytest.approx(np.full(len(edges) - 1, params["bin_width"]))
    expected = {"pool (verified)": [r["ppl"] for r in scored if r["correct"] and r["ppl"] is not None],
                **{m: [r["ppl"] for r in read_records(out / f"select_{m}" / f"select_{m}.jsonl")]
                   for m in ("gaussian", "lowest", "random")}}
    assert sorted(drawn) == sorted(expected)
    for label, ppls in expected.items():
        assert drawn[label][0] == np.histogram(ppls, bins=edges)[0].tolist(), label

    # a re-run reuses every stage
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert _changed(out) == []
    # a new learning rate for OXA_Full redoes that run and what reads it, nothing else
    third = CliRunner().invoke(app, args + ["--set", "train_oxa_full.learning_rate=0.0005"])
    assert third.exit_code == 0, third.output
    assert _changed(out) == ["train_oxa_full", "rl_oxa_full", "eval_oxa_full", "eval_rl_oxa_full", "report",
                             "demo_report"]
    # --only redoes one stage (the same settings: the same records)
    before = (out / "select_random" / "select_random.jsonl").read_bytes()
    fourth = CliRunner().invoke(app, args + ["--set", "train_oxa_full.learning_rate=0.0005", "--only", "select_random"])
    assert fourth.exit_code == 0, fourth.output
    assert _changed(out) == ["select_random"]
    assert (out / "select_random" / "select_random.jsonl").read_bytes() == before


def test_shipped_demo_recipe_quick_profile_matches_the_quick_base_model():
    """The quick profile builds the base model the tests cache (QUICK_BASE), so they share it."""
    from oxa.pipeline.recipe import load_recipe
    from oxa.synth.basemodel import QUICK_BASE

    recipe, _ = load_recipe("demo", profile="quick")
    stage = next(s for s in recipe.stages if s.name == "base_model")
    from oxa.demo import SynthBaseConfig

    assert SynthBaseConfig.model_validate({**stage.settings, "cache": None}).model().key() == QUICK_BASE.key()


def test_configs_demo_yaml_spells_out_the_defaults():
    from oxa.config import load_yaml, validate
    from oxa.demo import DemoConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert validate(DemoConfig, load_yaml(path), source=str(path)) == DemoConfig()
