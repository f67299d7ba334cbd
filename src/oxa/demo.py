"""``oxa demo``: the OXA data pipeline end to end on the synthetic world, as a list of named stages.

Each :class:`Stage` is a function that reads earlier stages' outputs from the run directory, writes
its own atomically, and returns what the manifest records about it (outputs, counts). The runner
keeps ``manifest.json`` (the settings, and per stage: a key, outputs, counts, seconds): a stage whose
key - a hash of the settings it depends on and of its upstream stages' keys - is unchanged and whose
outputs all exist is reused, so a re-run after a crash or a settings change redoes only what must be.
Later stages (training, self-distillation, evaluation) join by appending to :data:`STAGES`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median
from typing import Any, Optional

import numpy as np
from pydantic import Field

from oxa.config import StageConfig
from oxa.io import read_records, write_json, write_records, write_text
from oxa.synth.basemodel import QUICK_BASE, BaseModelConfig, build_base_model
from oxa.synth.checker import check_steps
from oxa.synth.world import WorldConfig, write_world

QUICK_WORLD = WorldConfig(n_queries=40, samples_per_query=4, benchmark_per_difficulty=8, rl_prompts=16)


class DemoSelectConfig(StageConfig):
    """The selections compared. Unset PPL settings adapt to the scored pool (a tiny model's PPLs are not
    a 1.5B model's): ``mu`` at the pool's ``mu_quantile``, ``sigma`` half the pool's standard deviation,
    the range the pool's 0.5-99.5 % quantiles in 40 bins."""

    share: float = Field(0.5, gt=0, le=1, description="selection size as a share of the verified queries")
    methods: list[str] = ["gaussian", "lowest", "random"]
    mu: Optional[float] = None
    mu_quantile: float = Field(0.75, gt=0, lt=1)
    sigma: Optional[float] = None
    ppl_min: Optional[float] = None
    ppl_max: Optional[float] = None
    bin_width: Optional[float] = None


class DemoConfig(StageConfig):
    """Settings of ``oxa demo``; ``world`` and ``base`` default to the full or the ``quick`` size."""

    out: Path = Path("runs/demo")
    seed: int = 0
    quick: bool = False
    cache: Optional[Path] = None
    world: Optional[WorldConfig] = None
    base: Optional[BaseModelConfig] = None
    select: DemoSelectConfig = DemoSelectConfig()
    workers: int = Field(2, ge=1, description="verifier processes")
    token_budget: int = Field(16384, gt=0, description="padded tokens per scoring batch")

    def world_config(self) -> WorldConfig:
        world = self.world or (QUICK_WORLD if self.quick else WorldConfig())
        return world.model_copy(update={"seed": self.seed})

    def base_config(self) -> BaseModelConfig:
        return self.base or (QUICK_BASE if self.quick else BaseModelConfig())


@dataclass
class Run:
    """What a stage sees: the settings, the run directory, and the manifest entries of earlier stages."""

    config: DemoConfig
    out: Path
    done: dict[str, dict[str, Any]]

    def path(self, relative: str) -> Path:
        return self.out / relative


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Run], dict[str, Any]]  # returns {"outputs": [relative or absolute paths], "counts": {...}, ...}
    settings: Callable[[DemoConfig], Any]  # what the stage's result depends on (hashed into its key)
    after: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------- stages
def stage_world(run: Run) -> dict[str, Any]:
    summary = write_world(run.config.world_config(), run.path("world"))
    return {"outputs": [f"world/{f}" for f in summary["files"].values()] + ["world/world.json"],
            "counts": {**summary["counts"], "teacher_planted_errors": summary["teacher_planted_errors"]}}


def stage_base_model(run: Run) -> dict[str, Any]:
    path = build_base_model(run.config.base_config(), cache=run.config.cache)
    info = json.loads((path / "oxa_synth_base.json").read_text())
    return {"outputs": [str(path)], "model": str(path),
            "counts": {k: info[k] for k in ("params", "tokens", "steps", "loss_last", "seconds")}}


def stage_verify(run: Run) -> dict[str, Any]:
    """Grade the teacher's answers with the project verifier; the step checker's verdict rides along."""
    from oxa.verify import verify_records

    teacher = read_records(run.path("world/teacher.jsonl"))
    graded, summary = verify_records(teacher, workers=run.config.workers, source=str(run.path("world/teacher.jsonl")))
    for r in graded:
        report = check_steps(r, r["response"])
        r["first_error"] = report.first_error
    agree = sum(r["correct"] == (r["first_error"] is None) for r in graded)
    write_records(run.path("data/verified.jsonl"), graded)
    return {"outputs": ["data/verified.jsonl"],
            "counts": {"records": len(graded), "correct": summary["correct"], "incorrect": summary["incorrect"],
                       "unparsable": summary["unparsable"], "timeout": summary["timeout"],
                       "step_checker_agrees": agree}}


def stage_score(run: Run) -> dict[str, Any]:
    """PPL of every teacher trajectory under the base model (prompt-conditioned, fp32)."""
    from oxa.models import load_model, load_tokenizer
    from oxa.scoring import score_records

    model_dir = run.done["base_model"]["model"]
    records = read_records(run.path("data/verified.jsonl"))
    scored = score_records(records, load_model(model_dir), load_tokenizer(model_dir),
                           token_budget=run.config.token_budget, source=str(run.path("data/verified.jsonl")))
    write_records(run.path("data/scored.jsonl"), scored)
    by_strategy = ppl_by_strategy(scored)
    familiar = [r["ppl"] for r in scored if r["correct"] and r["pretrain_share"] > 0 and r["ppl"] is not None]
    unfamiliar = [r["ppl"] for r in scored if r["correct"] and r["pretrain_share"] == 0 and r["ppl"] is not None]
    return {"outputs": ["data/scored.jsonl"], "ppl_by_strategy": by_strategy,
            "counts": {"scored": len(scored), "median_ppl_seen_in_pretraining": _median(familiar),
                       "median_ppl_unseen_in_pretraining": _median(unfamiliar)}}


def stage_select(run: Run) -> dict[str, Any]:
    from oxa.selection import SelectConfig, run_selection

    scored = read_records(run.path("data/scored.jsonl"))
    s = run.config.select
    pool = np.array([r["ppl"] for r in scored if r["correct"] and r["ppl"] is not None], dtype=float)
    n = max(1, int(s.share * len({r["query_id"] for r in scored if r["correct"]})))
    lo = s.ppl_min if s.ppl_min is not None else float(np.floor(np.quantile(pool, 0.005) * 100) / 100)
    hi = s.ppl_max if s.ppl_max is not None else float(np.ceil(np.quantile(pool, 0.995) * 100) / 100)
    params = {"n": n, "mu": s.mu if s.mu is not None else float(np.quantile(pool, s.mu_quantile)),
              "sigma": s.sigma if s.sigma is not None else float(0.5 * pool.std()),
              "ppl_min": lo, "ppl_max": hi, "bin_width": s.bin_width or (hi - lo) / 40}
    outputs, counts, histograms = [], {}, {}
    for method in s.methods:
        cfg = SelectConfig(input=run.path("data/scored.jsonl"), output=run.path(f"data/ce_{method}.jsonl"),
                           method=method, seed=run.config.seed, **params)
        sel = run_selection(scored, cfg, source=str(cfg.input))
        write_records(cfg.output, sel.records)
        outputs.append(f"data/ce_{method}.jsonl")
        counts[method] = {"selected": len(sel.records), "median_ppl": _median([r["ppl"] for r in sel.records]),
                          "unseen_strategy_share": _share(sel.records)}
        histograms[method] = [r["ppl"] for r in sel.records]
    write_json(run.path("data/selections.json"), {"params": params, "counts": counts, "ppl": histograms})
    return {"outputs": outputs + ["data/selections.json"], "params": params, "counts": counts}


def stage_report(run: Run) -> dict[str, Any]:
    from oxa.plots import plot_ppl_histograms

    scored = read_records(run.path("data/scored.jsonl"))
    sel = json.loads(run.path("data/selections.json").read_text())
    correct = [r for r in scored if r["correct"] and r["ppl"] is not None]
    plot_ppl_histograms({"seen in pre-training": [r["ppl"] for r in correct if r["pretrain_share"] > 0],
                         "unseen in pre-training": [r["ppl"] for r in correct if r["pretrain_share"] == 0]},
                        run.path("plots/ppl_pool.png"), title="Base-model PPL of verified teacher trajectories")
    plot_ppl_histograms({"pool (verified)": [r["ppl"] for r in correct], **sel["ppl"]},
                        run.path("plots/ppl_selections.png"), title="PPL of the selections")
    write_text(run.path("report.md"), render_report(run, scored, sel))
    return {"outputs": ["report.md", "plots/ppl_pool.png", "plots/ppl_selections.png"], "counts": {}}


STAGES: list[Stage] = [
    Stage("world", stage_world, lambda c: c.world_config().model_dump()),
    Stage("base_model", stage_base_model, lambda c: c.base_config().key()),
    Stage("verify", stage_verify, lambda c: None, after=("world",)),
    Stage("score", stage_score, lambda c: c.token_budget, after=("verify", "base_model")),
    Stage("select", stage_select, lambda c: [c.seed, c.select.model_dump()], after=("score",)),
    Stage("report", stage_report, lambda c: None, after=("select",)),
]


# ------------------------------------------------------------------------------------------- runner
def stage_key(stage: Stage, config: DemoConfig, keys: dict[str, str]) -> str:
    blob = json.dumps({"stage": stage.name, "settings": stage.settings(config),
                       "after": [keys[a] for a in stage.after]}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _outputs_exist(out: Path, entry: dict[str, Any]) -> bool:
    return all((out / p).exists() for p in entry.get("outputs", []))  # absolute paths stay absolute


def run_demo(config: DemoConfig, *, stages: list[Stage] | None = None, force: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) every stage in order; return the manifest (also written to ``<out>/manifest.json``)."""
    stages = STAGES if stages is None else stages
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    old = json.loads(manifest_path.read_text())["stages"] if manifest_path.exists() and not force else {}
    manifest: dict[str, Any] = {"config": config.model_dump(mode="json"), "stages": {}}
    keys: dict[str, str] = {}
    start = time.perf_counter()
    for i, stage in enumerate(stages, start=1):
        key = keys[stage.name] = stage_key(stage, config, keys)
        prev = old.get(stage.name)
        if prev and prev.get("key") == key and _outputs_exist(out, prev):
            manifest["stages"][stage.name] = {**prev, "reused": True}
            log(f"[{i}/{len(stages)}] {stage.name}: up to date, reused")
            continue
        log(f"[{i}/{len(stages)}] {stage.name} ...")
        t0 = time.perf_counter()
        result = stage.run(Run(config, out, manifest["stages"]))
        seconds = round(time.perf_counter() - t0, 2)
        manifest["stages"][stage.name] = {"key": key, **result, "seconds": seconds, "reused": False}
        write_json(manifest_path, manifest)  # after every stage: a crash keeps what finished
        log(f"[{i}/{len(stages)}] {stage.name}: done in {seconds:.1f} s {_brief(result.get('counts', {}))}")
    manifest["seconds"] = round(time.perf_counter() - start, 2)
    write_json(manifest_path, manifest)
    return manifest


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


def render_report(run: Run, scored: list[dict], sel: dict[str, Any]) -> str:
    st = run.done
    v, w = st["verify"]["counts"], st["world"]["counts"]
    lines = [
        "# OXA demo on the synthetic math world", "",
        f"Run directory `{run.out}`, seed {run.config.seed}{' (quick size)' if run.config.quick else ''}. "
        f"Base model: `{st['base_model']['model']}` ({st['base_model']['counts']['params']:,} parameters, "
        f"{st['base_model']['counts']['tokens']:,} pre-training tokens).", "",
        "## Data", "",
        f"- teacher trajectories: {w['teacher']:,} ({w['teacher_planted_errors']} with a planted slip); "
        f"benchmark problems: {w['benchmark']}; RL prompts: {w['rl']}",
        f"- verified correct: {v['correct']:,}, incorrect: {v['incorrect']:,}, unparsable: {v['unparsable']}; "
        f"the step checker agrees with the verifier on {v['step_checker_agrees']:,} of {v['records']:,}", "",
        "## Base-model PPL by strategy (verified trajectories)", "",
        "Strategies with pre-training share 0 never occur in the base model's corpus: the reasoning "
        "patterns it has not captured, which OXA's selection promotes.", "",
        "| family | strategy | pre-training share | n | median PPL | mean PPL |", "|---|---|---|---|---|---|",
    ]
    lines += [f"| {g['family']} | {g['strategy']} | {g['pretrain_share']:.1f} | {g['n']} | {g['median_ppl']:.3f} | "
              f"{g['mean_ppl']:.3f} |" for g in st["score"]["ppl_by_strategy"]]
    p = sel["params"]
    lines += ["", "## Selections", "",
              f"N = {p['n']} (one per query); Gaussian target mu = {p['mu']:.3f}, sigma = {p['sigma']:.3f}, "
              f"range [{p['ppl_min']:.2f}, {p['ppl_max']:.2f}], bin width {p['bin_width']:.4f}.", "",
              "| method | selected | median PPL | share of unseen strategies |", "|---|---|---|---|"]
    lines += [f"| {m} | {c['selected']} | {_fmt(c['median_ppl'])} | {_fmt(c['unseen_strategy_share'])} |"
              for m, c in sel["counts"].items()]
    lines += ["", "![PPL of the pool by familiarity](plots/ppl_pool.png)", "",
              "![PPL of the selections](plots/ppl_selections.png)", "", "## Stages", "",
              "| stage | seconds | reused |", "|---|---|---|"]
    lines += [f"| {name} | {e['seconds']:.1f} | {'yes' if e.get('reused') else 'no'} |" for name, e in st.items()]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float | None:
    values = [x for x in values if x is not None]
    return round(median(values), 4) if values else None


def _share(records: list[dict]) -> float | None:
    return round(sum(r["pretrain_share"] == 0 for r in records) / len(records), 3) if records else None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _brief(counts: dict[str, Any]) -> str:
    flat = {k: v for k, v in counts.items() if not isinstance(v, dict)}
    return "(" + ", ".join(f"{k} {v}" for k, v in flat.items()) + ")" if flat else ""
