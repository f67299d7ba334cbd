"""``oxa demo``: the OXA recipe end to end on the synthetic world, as the shipped recipe ``demo``.

The recipe (``oxa/recipes/demo.yaml``) lists the stages: the world and its base model, verify -> score ->
select (Gaussian, lowest, random), self-distillation and error mining (``oxa distill``), the four
fine-tuning runs (SFT_LP, SFT, OXA_MLE, OXA_Full), GRPO from each of them on the world's RL split, the
evaluation of every model before and after RL, the comparison report (``oxa report``) and this module's
own report. ``oxa demo`` is ``oxa run demo`` with the demo's few settings as recipe overrides; the
pipeline engine (:mod:`oxa.pipeline`) reuses what is done. This module adds the three kinds only the
synthetic world has: ``synth-world``, ``synth-base`` and ``demo-report``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import mean, median
from typing import Any, Optional

import numpy as np
from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.errors import OxaError
from oxa.io import read_records, write_text
from oxa.pipeline.kinds import StageContext, stage_kind
from oxa.pipeline.run import RunSettings
from oxa.synth.basemodel import BaseModelConfig, base_model_dir, build_base_model
from oxa.synth.checker import check_steps
from oxa.synth.corpus import familiarity
from oxa.synth.world import WorldConfig, write_world


class DemoConfig(RunSettings):
    """Settings of ``oxa demo``: the recipe ``demo`` (``oxa run demo``) with its usual knobs as flags."""

    out: Path = Field(Path("runs/demo"), description="run directory (one directory per stage, manifest.json, "
                      "report.md)", json_schema_extra=cli("-o"))
    seed: int = Field(0, description="seed of the world, the selections, the training and RL runs and the sampling")
    seeds: list[int] = Field(default_factory=list, description="run the demo once per seed, in OUT/seed-S "
                             "(repeatable: --seeds 0 --seeds 1), and write OUT/report.md: each method's mean and "
                             "spread, and the paper's claims with bootstrap intervals")
    quick: bool = Field(False, description="the recipe's quick profile: a small world and base model (used by tests)")
    cache: Optional[Path] = Field(None, description="cache root for base models (default: $OXA_CACHE or ~/.cache/oxa)")
    workers: int = Field(2, ge=1, description="grading processes")

    def recipe_overrides(self) -> list[str]:
        own = [f"vars.seed={self.seed}", f"vars.workers={self.workers}"]
        if self.cache is not None:
            own.append(f"vars.cache={json.dumps(str(self.cache))}")
        return own + list(self.overrides)


def run_demo(config: DemoConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) the demo recipe's stages; returns the manifest (``<out>/manifest.json``)."""
    from oxa.pipeline.recipe import load_recipe
    from oxa.pipeline.run import run_recipe

    recipe, source = load_recipe("demo", profile="quick" if config.quick else None,
                                 overrides=config.recipe_overrides())
    return run_recipe(recipe, config.out, source=source, from_stage=config.from_stage, only=config.only,
                      force=config.force, header={"demo": config.model_dump(mode="json")}, log=log)


# ------------------------------------------------------------------------------------------- kinds
@stage_kind("synth-world", WorldConfig, output_field=None, fill=".")
def synth_world(cfg: WorldConfig, ctx: StageContext) -> dict[str, Any]:
    """The world's splits in the stage's directory: teacher.jsonl, benchmark.jsonl, rl.jsonl, world.json."""
    summary = write_world(cfg, ctx.dir)
    return {"outputs": [str(ctx.dir / f) for f in summary["files"].values()] + [str(ctx.dir / "world.json")],
            "counts": {**summary["counts"], "teacher_planted_errors": summary["teacher_planted_errors"]}}


class SynthBaseConfig(BaseModelConfig):
    """The base model, pre-trained from scratch on the world's corpus (cached by these settings)."""

    cache: Optional[Path] = Field(None, description="cache root (default: $OXA_CACHE or ~/.cache/oxa)")

    def model(self) -> BaseModelConfig:
        return BaseModelConfig(**self.model_dump(exclude={"cache"}))


@stage_kind("synth-base", SynthBaseConfig, output_field=None,
            output=lambda cfg, stage_dir: base_model_dir(cfg.model(), cfg.cache))
def synth_base(cfg: SynthBaseConfig, ctx: StageContext) -> dict[str, Any]:
    path = build_base_model(cfg.model(), cache=cfg.cache)
    info = json.loads((path / "oxa_synth_base.json").read_text())
    return {"model": str(path), "counts": {k: info[k] for k in ("params", "tokens", "steps", "loss_last", "seconds")}}


class DemoReportConfig(StageConfig):
    """What the demo's report reads: the world, the base model and the outputs of the stages it tells about."""

    world: Path = Field(description="the world's directory")
    base_model: str = Field(description="the base model")
    verified: Path = Field(description="the verified teacher records")
    scored: Path = Field(description="the scored teacher records")
    selections: dict[str, Path] = Field(description="selection label -> selected records")
    distill: Optional[Path] = Field(None, description="the UL set of oxa distill (its run directory beside it)")
    runs: dict[str, dict[str, str]] = Field(default_factory=dict, description="fine-tuning run -> {method, ce, ul}")
    evals: dict[str, Path] = Field(default_factory=dict, description="model name -> its eval directory")
    output: Path = Field(description="directory of report.md and plots/")


@stage_kind("demo-report", DemoReportConfig, fill=".", output="report.md")
def demo_report(cfg: DemoReportConfig, ctx: StageContext) -> dict[str, Any]:
    from oxa.plots import plot_ppl_histograms

    scored = read_records(cfg.scored)
    correct = [r for r in scored if r["correct"] and r["ppl"] is not None]
    selected = {label: read_records(path) for label, path in cfg.selections.items()}
    gaussian = _gaussian_params(cfg.selections)
    edges = _edges(gaussian)
    out = Path(cfg.output)
    plot_ppl_histograms({f"{k} strategies": v for k, v in _by_familiarity(correct).items()},
                        out / "plots/ppl_pool.png", bin_edges=edges,
                        title="Base-model PPL of verified teacher trajectories, by how often pre-training saw the strategy")
    plot_ppl_histograms({"pool (verified)": [r["ppl"] for r in correct],
                         **{label: [r["ppl"] for r in recs] for label, recs in selected.items()}},
                        out / "plots/ppl_selections.png", bin_edges=edges, title="PPL of the selections")
    evals = {name: _eval_counts(path) for name, path in cfg.evals.items()}
    write_text(out / "report.md", render_report(cfg, ctx, scored, selected, gaussian, evals))
    return {"outputs": [str(out / "plots/ppl_pool.png"), str(out / "plots/ppl_selections.png")],
            "counts": {"evaluated": len(evals)}}


def _gaussian_params(selections: dict[str, Path]) -> dict[str, Any]:
    """The Gaussian selection's settings, as ``oxa select`` recorded them beside its output (``*.hist.json``):
    its PPL range and bins are the plots' too."""
    from oxa.selection import side_paths

    for path in selections.values():
        hist = json.loads(side_paths(path)[0].read_text())
        if hist["method"] == "gaussian":
            return hist["params"]
    raise OxaError(f"demo-report: none of the selections {sorted(selections)} is a gaussian one")


def _eval_counts(path: Path) -> dict[str, float]:
    """Pass@1, Pass@n, each benchmark's Pass@1, and the share of samples the step checker accepts."""
    results = json.loads((Path(path) / "results.json").read_text())
    samples = read_records(Path(path) / "samples.jsonl")
    return {"pass@1": round(results["average"]["pass@1"], 4), "pass@n": round(results["average"]["pass@n"], 4),
            "all_steps_right": round(mean(check_steps(s, s["response"]).correct for s in samples), 4),
            **{b: round(m["pass@1"], 4) for b, m in results["benchmarks"].items()}}


# ------------------------------------------------------------------------------------------- report
def ppl_by_strategy(scored: list[dict]) -> list[dict[str, Any]]:
    """Median PPL of verified trajectories per family and strategy, with the strategy's pre-training share."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    shares = {}
    for r in scored:
        if r["correct"] and r["ppl"] is not None:
            groups[r["family"], r["strategy"]].append(r["ppl"])
            shares[r["family"], r["strategy"]] = r["pretrain_share"]
    return [{"family": f, "strategy": s, "pretrain_share": shares[f, s], "n": len(v), "median_ppl": round(median(v), 3),
             "mean_ppl": round(mean(v), 3)} for (f, s), v in sorted(groups.items())]


def render_report(cfg: DemoReportConfig, ctx: StageContext, scored: list[dict], selected: dict[str, list[dict]],
                  params: dict[str, Any], evals: dict[str, dict[str, float]]) -> str:
    world = json.loads((Path(cfg.world) / "world.json").read_text())
    w = world["counts"]
    verified = read_records(cfg.verified)
    n_correct = sum(bool(r["correct"]) for r in verified)
    agree = sum(bool(r["correct"]) == check_steps(r, r["response"]).correct for r in verified)
    base_info = json.loads((Path(cfg.base_model) / "oxa_synth_base.json").read_text())
    lines = [
        "# OXA demo on the synthetic math world", "",
        f"Run directory `{ctx.run_dir}`, world seed {world['config']['seed']}. Base model: `{cfg.base_model}` "
        f"({base_info['params']:,} parameters, {base_info['tokens']:,} pre-training tokens).", "",
        "## Data", "",
        f"- teacher trajectories: {w['teacher']:,} ({world['teacher_planted_errors']} with a planted slip); "
        f"benchmark problems: {w['benchmark']}; RL prompts: {w['rl']}",
        f"- verified correct: {n_correct:,} of {len(verified):,}; the step checker agrees with the verifier on "
        f"{agree:,} of {len(verified):,}", "",
        "## Base-model PPL by strategy (verified trajectories)", "",
        "The pre-training share is how often the base model's corpus used the strategy for that family "
        "(0: never). Rarely seen strategies are the reasoning patterns it has not captured, which OXA's "
        "selection promotes.", "",
        "| family | strategy | pre-training share | n | median PPL | mean PPL |", "|---|---|---|---|---|---|",
    ]
    lines += [f"| {g['family']} | {g['strategy']} | {g['pretrain_share']:.1f} | {g['n']} | {g['median_ppl']:.3f} | "
              f"{g['mean_ppl']:.3f} |" for g in ppl_by_strategy(scored)]
    p = params
    lines += ["", "## Selections", "",
              f"N = {p['n']} (one per query); Gaussian target mu = {p['mu']:.3f}, sigma = {p['sigma']:.3f}, "
              f"range [{p['ppl_min']:.2f}, {p['ppl_max']:.2f}], bin width {p['bin_width']:.4f}.", "",
              "| selection | selected | median PPL | share of rare or unseen strategies |", "|---|---|---|---|"]
    lines += [f"| {label} | {len(recs)} | {_fmt(_median([r['ppl'] for r in recs]))} | {_fmt(_rare_share(recs))} |"
              for label, recs in selected.items()]
    if cfg.distill is not None:
        steps = json.loads((Path(cfg.distill).parent / "manifest.json").read_text())["stages"]
        sub, gen, ver = (steps[k]["counts"] for k in ("teacher_subset", "generate", "verify"))
        lines += ["", "## Fine-tuning", "",
                  f"Instruction model for error mining (`oxa distill`): SFT on {sub['chosen']} verified teacher "
                  f"examples; {gen['samples']} self-distilled samples, {ver['correct'] / max(1, ver['verified']):.1%} "
                  f"correct; {len(read_records(cfg.distill))} lowest-PPL errors form the UL set."]
    if cfg.runs:
        lines += ["", "| run | method | CE data | UL data |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['method']} | {r['ce']} | {r.get('ul') or '-'} |" for name, r in cfg.runs.items()]
    if evals:
        cols = list(next(iter(evals.values())))
        lines += ["", "## Evaluation on the held-out benchmarks", "",
                  "Pass@1 / Pass@n averaged over synth-easy, -medium and -hard, each benchmark's Pass@1, and the "
                  "share of samples whose every step the step checker accepts (tables and plots of every model: "
                  "[report/report.md](../report/report.md)). `rl_X` is GRPO from fine-tuned model X.", "",
                  "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        lines += [f"| {name} | " + " | ".join(f"{100 * c[k]:.1f}" for k in cols) + " |" for name, c in evals.items()]
    lines += ["", "![PPL of the pool by familiarity](plots/ppl_pool.png)", "",
              "![PPL of the selections](plots/ppl_selections.png)", "", "## Stages", "",
              "| stage | seconds | reused |", "|---|---|---|"]
    manifest = ctx.run_dir / "manifest.json"
    stages = json.loads(manifest.read_text())["stages"] if manifest.exists() else {}
    lines += [f"| {name} | {e['seconds']:.1f} | {'yes' if e.get('reused') else 'no'} |" for name, e in stages.items()
              if "seconds" in e]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float | None:
    values = [x for x in values if x is not None]
    return round(median(values), 4) if values else None


def _by_familiarity(records: list[dict]) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {k: [] for k in ("frequent", "occasional", "rare", "unseen")}
    for r in records:
        if r["ppl"] is not None:
            groups[familiarity(r["pretrain_share"])].append(r["ppl"])
    return {k: v for k, v in groups.items() if v}


def _rare_share(records: list[dict]) -> float | None:
    rare = sum(familiarity(r["pretrain_share"]) in ("rare", "unseen") for r in records)
    return round(rare / len(records), 3) if records else None


def _edges(params: dict[str, float]) -> np.ndarray:
    return np.arange(params["ppl_min"], params["ppl_max"] + params["bin_width"] / 2, params["bin_width"])


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
