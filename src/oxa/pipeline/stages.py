"""The shipped stage kinds: one per ``oxa`` command, each calling the library function the command calls.

Settings models are named as ``"module:Class"`` strings so that reading a recipe imports only the
modules of the kinds it uses. The synthetic world's kinds (``synth-world``, ``synth-base``,
``demo-report``) are in :mod:`oxa.demo`; ``gsm8k-teacher`` is in :mod:`oxa.data.teacher`.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from oxa.io import read_records
from oxa.pipeline.kinds import StageContext, stage_kind


def _ppl_counts(path: Path) -> dict[str, Any]:
    records = read_records(path)
    ppl = [r["ppl"] for r in records if r.get("ppl") is not None]
    return {"records": len(records), "with_ppl": len(ppl), "median_ppl": round(median(ppl), 4) if ppl else None}


@stage_kind("verify", "oxa.verify:VerifyConfig", command="verify")
def verify(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.verify import verify_file
    from oxa.verify.stage import summary_path

    if not ctx.launched:
        verify_file(cfg)
    s = json.loads(summary_path(Path(cfg.output)).read_text(encoding="utf-8"))
    keys = ("records", "correct", "incorrect", "unparsable", "timeout", "skipped")
    return {"counts": {k: s[k] for k in keys if k in s}, "outputs": [str(summary_path(Path(cfg.output)))]}


@stage_kind("score", "oxa.scoring:ScoreConfig", command="score")
def score(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.scoring import score_file

    if not ctx.launched:
        score_file(cfg)
    return {"counts": _ppl_counts(cfg.output)}


@stage_kind("select", "oxa.selection:SelectConfig", command="select")
def select(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.selection import select_file, side_paths

    if not ctx.launched:
        select_file(cfg)
    return {"counts": _ppl_counts(cfg.output), "outputs": [str(p) for p in side_paths(cfg.output)]}


@stage_kind("generate", "oxa.generation:GenerateConfig", command="generate")
def generate(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.generation import generate_file

    if not ctx.launched:
        generate_file(cfg)
    return {"counts": {"records": len(read_records(cfg.output))}}


@stage_kind("distill", "oxa.distill:DistillConfig", fill=".", output="ul_set.jsonl", command="distill")
def distill(cfg, ctx: StageContext) -> dict[str, Any]:
    """Self-distillation and error mining; its steps are engine steps of their own (``<dir>/manifest.json``)."""
    from oxa.distill import distill as run_distill

    if not ctx.launched:
        run_distill(cfg, log=lambda msg: ctx.log(f"  {ctx.name}: {msg}"))
    steps = json.loads((Path(cfg.output) / "manifest.json").read_text(encoding="utf-8"))["stages"]
    return {"counts": {name: s.get("counts", {}) for name, s in steps.items()}}


@stage_kind("train", "oxa.training:TrainConfig", output_field="output_dir", fill=".", command="train")
def train(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.training import train as run_train

    if not ctx.launched:
        run_train(cfg, log=lambda msg: None)
    info = json.loads((Path(cfg.output_dir) / "oxa_train.json").read_text(encoding="utf-8"))
    return {"counts": {k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "outputs": [str(Path(cfg.output_dir) / "config.json")]}


@stage_kind("rl", "oxa.rl.config:RLConfig", output_field="output_dir", fill=".", command="rl")
def rl(cfg, ctx: StageContext) -> dict[str, Any]:
    """GRPO (``oxa.rl.run.train_rl``) in this process, or ``oxa rl`` under a launcher."""
    from oxa.rl.run import train_rl

    if not ctx.launched:
        train_rl(cfg, log=lambda msg: None)
    info = json.loads((Path(cfg.output_dir) / "oxa_rl.json").read_text(encoding="utf-8"))
    return {"counts": {k: info[k] for k in ("prompts", "dropped_long_prompts", "global_steps", "seconds") if k in info},
            "outputs": [str(Path(cfg.output_dir) / "config.json")]}


@stage_kind("eval", "oxa.evaluation:EvalConfig", fill=".", command="eval")
def evaluate(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.evaluation import evaluate as run_eval

    if not ctx.launched:
        run_eval(cfg)
    results = json.loads((Path(cfg.output) / "results.json").read_text(encoding="utf-8"))
    counts = {"pass@1": round(results["average"]["pass@1"], 4), "pass@n": round(results["average"]["pass@n"], 4),
              **{f"{b}/pass@1": round(m["pass@1"], 4) for b, m in results["benchmarks"].items()}}
    return {"counts": counts, "outputs": [str(Path(cfg.output) / "results.json")]}


@stage_kind("report", "oxa.report:ReportConfig", fill=".", command="report")
def report(cfg, ctx: StageContext) -> dict[str, Any]:
    from oxa.report import report_file

    if not ctx.launched:
        report_file(cfg)
    return {"counts": {"runs": len(cfg.runs)}, "outputs": [str(Path(cfg.output) / "report.md")]}


import oxa.data.teacher  # noqa: E402,F401  (registers gsm8k-teacher)
import oxa.demo  # noqa: E402,F401  (registers the synthetic world's kinds)
