"""``oxa demo``: the OXA recipe end to end on the synthetic world, as a list of named stages.

World and base model, verify -> score -> select (Gaussian, lowest, random), self-distillation and
error mining, the four fine-tuning runs (SFT_LP, SFT, OXA_MLE, OXA_Full), evaluation, report. Each
:class:`Stage` is a function that reads earlier stages' outputs from the run directory, writes
its own atomically, and returns what the manifest records about it (outputs, counts). The runner
keeps ``manifest.json`` (the settings, and per stage: a key, outputs, counts, seconds): a stage whose
key - a hash of the settings it depends on and of its upstream stages' keys - is unchanged and whose
outputs all exist is reused, so a re-run after a crash or a settings change redoes only what must be.
More stages (RLVR, say) join by appending to :data:`STAGES`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median
from typing import Any, Optional

import numpy as np
from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.io import read_records, write_json, write_records, write_text
from oxa.synth.basemodel import QUICK_BASE, BaseModelConfig, build_base_model
from oxa.synth.checker import check_steps
from oxa.synth.corpus import familiarity
from oxa.synth.problems import Problem
from oxa.synth.world import WorldConfig, write_world

QUICK_WORLD = WorldConfig(n_queries=40, samples_per_query=4, benchmark_per_difficulty=8, rl_prompts=16)


class DemoSelectConfig(StageConfig):
    """The selections compared: Algorithm 1 (gaussian), SFT_LP (lowest) and SFT (random), N each.

    The defaults suit the default base model, whose verified pool measures (median PPL per strategy)
    1.1-2.2 for the strategies it saw most, 1.2-1.8 for occasional ones, 1.8-2.5 for rare ones and
    200-1700 for never-seen ones: the range [1, 8] drops the never-seen tail as the paper's [1, 5]
    drops a real pool's, and the target sits above the bulk (mu 3.5, sigma 1.0). ``redistribute``
    hands a short bin's deficit to its neighbours so all three sets have N records (the reference
    leaves short bins short). Unset (null) values adapt to the pool: ``mu`` at the in-range pool's
    ``mu_quantile``, the range at the pool's 0.5-99.5 % quantiles in 40 bins, ``sigma`` half the
    in-range standard deviation; the quick size uses that, since a barely trained model's PPLs lie
    far above any fixed range.
    """

    share: float = Field(0.5, gt=0, le=1, description="selection size as a share of the verified queries")
    methods: list[str] = Field(["gaussian", "lowest", "random"], description="selection methods compared (repeatable)")
    mu: Optional[float] = Field(3.5, description="gaussian: centre of the target PPL distribution (null: the "
                                                 "pool's mu_quantile)")
    mu_quantile: float = Field(0.75, gt=0, lt=1, description="quantile of the in-range pool that an unset mu takes")
    sigma: Optional[float] = Field(1.0, description="gaussian: its standard deviation (null: half the pool's)")
    ppl_min: Optional[float] = Field(1.0, description="lowest PPL kept (null: the pool's 0.5 % quantile)")
    ppl_max: Optional[float] = Field(8.0, description="highest PPL kept (null: the pool's 99.5 % quantile)")
    bin_width: Optional[float] = Field(0.05, description="width of the PPL bins (null: 40 bins over the range)")
    redistribute: bool = Field(True, description="hand a short bin's deficit to its neighbours, so every set has N "
                                                 "records")


QUICK_SELECT = DemoSelectConfig(mu=None, sigma=None, ppl_min=None, ppl_max=None, bin_width=None)


class DemoTrainConfig(StageConfig):
    """The fine-tuning runs compared (tiny budgets: the point is the pipeline, not the scores).

    SFT_LP trains on the lowest-PPL selection, SFT on the random one, OXA_MLE on the Gaussian one, and
    OXA_Full on the Gaussian one plus unlikelihood on mined errors: the instruction model (the base
    fine-tuned on ``instruct_share`` of the verified queries) samples ``samples`` answers to each of
    ``distill_queries`` teacher queries, and its wrong answers with the lowest base-model PPL
    (at least ``min_error_ppl``) form the UL set.

    Measured on the default base model: at lr 1e-3 every run fell below the base model (easy Pass@1 31 %
    -> 12-27 %), at 3e-4 they stay near it and differ. With the paper's alpha 1e-4 the UL term moves
    this model by less than sampling can see in ~25 steps (OXA_Full's samples equal OXA_MLE's), 0.1
    collapses it (easy 4 %), 0.01 is visible without collapsing.
    """

    enabled: bool = Field(True, description="run the fine-tuning stages (and what follows them)")
    epochs: float = Field(2.0, gt=0, description="passes over each CE set")
    learning_rate: float = Field(3e-4, gt=0, description="peak learning rate")
    per_step: int = Field(16, ge=1, description="CE (and UL) sequences per optimizer step")
    alpha: float = Field(1e-2, ge=0, description="unlikelihood weight (the paper's is 1e-4)")
    instruct_share: float = Field(0.25, gt=0, le=1, description="share of the verified queries the instruction "
                                                                "model for error mining is fine-tuned on")
    distill_queries: int = Field(100, ge=1, description="teacher queries the instruction model answers")
    samples: int = Field(4, ge=1, description="answers per query")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of those answers")
    max_new_tokens: int = Field(192, ge=1, description="longest answer, in tokens")
    min_error_ppl: float = Field(1.2, description="errors below this PPL (degenerate repetition) are not mined")


class DemoEvalConfig(StageConfig):
    """Evaluation of the base model and every fine-tuned one on the held-out synth benchmarks."""

    enabled: bool = Field(True, description="evaluate the models (and report)")
    problems_per_difficulty: int = Field(40, ge=1, description="held-out problems per difficulty")
    n: int = Field(4, ge=1, description="samples per problem (Pass@k for k up to n)")
    temperature: float = Field(0.6, ge=0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(192, ge=1, description="longest response, in tokens")


QUICK_EVAL = DemoEvalConfig(problems_per_difficulty=2, n=2)
EVAL_BENCHMARKS = ["synth-easy", "synth-medium", "synth-hard"]


_UNSET = " (these defaults, or smaller ones with --quick unless any is set here)"


class DemoConfig(StageConfig):
    """Settings of ``oxa demo``; unset sections default to the full or the ``quick`` size.

    ``seed`` seeds everything: the world's own ``seed`` setting is replaced by it.
    """

    out: Path = Field(Path("runs/demo"), description="run directory (data sets, manifest.json, report.md)",
                      json_schema_extra=cli("-o"))
    seed: int = Field(0, description="seed of the world, the selections and the fine-tuning runs")
    quick: bool = Field(False, description="a small world and base model (about a minute; used by tests)")
    cache: Optional[Path] = Field(None, description="cache root for base models (default: $OXA_CACHE or ~/.cache/oxa)")
    world: Optional[WorldConfig] = Field(None, description=f"the world's sizes{_UNSET}")
    base: Optional[BaseModelConfig] = Field(None, description=f"the base model, pre-trained from scratch{_UNSET}")
    select: Optional[DemoSelectConfig] = Field(None, description=f"the selections compared{_UNSET}")
    train: DemoTrainConfig = DemoTrainConfig()
    eval: Optional[DemoEvalConfig] = Field(None, description=f"evaluation on the held-out benchmarks{_UNSET}")
    workers: int = Field(2, ge=1, description="verifier processes")
    token_budget: int = Field(16384, gt=0, description="padded tokens per scoring batch")

    def world_config(self) -> WorldConfig:
        world = self.world or (QUICK_WORLD if self.quick else WorldConfig())
        return world.model_copy(update={"seed": self.seed})

    def base_config(self) -> BaseModelConfig:
        return self.base or (QUICK_BASE if self.quick else BaseModelConfig())

    def eval_config(self) -> DemoEvalConfig:
        return self.eval or (QUICK_EVAL if self.quick else DemoEvalConfig())

    def select_config(self) -> DemoSelectConfig:
        return self.select or (QUICK_SELECT if self.quick else DemoSelectConfig())


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
    after: tuple[str, ...] = ()  # upstream stages (those that are enabled)
    enabled: Callable[[DemoConfig], bool] = lambda c: True


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
    groups = _by_familiarity([r for r in scored if r["correct"]])
    return {"outputs": ["data/scored.jsonl"], "ppl_by_strategy": ppl_by_strategy(scored),
            "counts": {"scored": len(scored), **{f"median_ppl_{k}": _median(v) for k, v in groups.items()}}}


def stage_select(run: Run) -> dict[str, Any]:
    from oxa.selection import SelectConfig, run_selection

    scored = read_records(run.path("data/scored.jsonl"))
    s = run.config.select_config()
    pool = np.array([r["ppl"] for r in scored if r["correct"] and r["ppl"] is not None], dtype=float)
    n = max(1, int(s.share * len({r["query_id"] for r in scored if r["correct"]})))
    lo = s.ppl_min if s.ppl_min is not None else float(np.floor(np.quantile(pool, 0.005) * 100) / 100)
    hi = s.ppl_max if s.ppl_max is not None else float(np.ceil(np.quantile(pool, 0.995) * 100) / 100)
    in_range = pool[(pool >= lo) & (pool <= hi)]
    params = {"n": n, "mu": s.mu if s.mu is not None else float(np.quantile(in_range, s.mu_quantile)),
              "sigma": s.sigma if s.sigma is not None else float(0.5 * in_range.std()),
              "ppl_min": lo, "ppl_max": hi, "bin_width": s.bin_width or (hi - lo) / 40}
    outputs, counts, histograms = [], {}, {}
    for method in s.methods:
        cfg = SelectConfig(input=run.path("data/scored.jsonl"), output=run.path(f"data/ce_{method}.jsonl"),
                           method=method, seed=run.config.seed, redistribute=s.redistribute, **params)
        sel = run_selection(scored, cfg, source=str(cfg.input))
        write_records(cfg.output, sel.records)
        outputs.append(f"data/ce_{method}.jsonl")
        counts[method] = {"selected": len(sel.records), "median_ppl": _median([r["ppl"] for r in sel.records]),
                          "rare_strategy_share": _rare_share(sel.records)}
        histograms[method] = [r["ppl"] for r in sel.records]
    write_json(run.path("data/selections.json"), {"params": params, "counts": counts, "ppl": histograms})
    return {"outputs": outputs + ["data/selections.json"], "params": params, "counts": counts}


def _train(run: Run, name: str, method: str, ce: str, ul: str | None = None) -> str:
    from oxa.training import TrainConfig, train

    t = run.config.train
    cfg = TrainConfig(model=run.done["base_model"]["model"], output_dir=run.path(f"models/{name}"), method=method,
                      ce_data=run.path(ce), ul_data=run.path(ul) if ul else None, alpha=t.alpha,
                      ce_per_step=t.per_step, ul_per_step=t.per_step, micro_batch_size=t.per_step,
                      learning_rate=t.learning_rate, num_train_epochs=t.epochs, weight_decay=0.1,
                      adam_beta2=0.95, warmup_ratio=0.1, seed=run.config.seed, logging_steps=10)
    return str(train(cfg, log=lambda msg: None))


def stage_distill(run: Run) -> dict[str, Any]:
    """Self-distillation and error mining: the UL set of OXA_Full."""
    from oxa.generation import generate_records
    from oxa.models import load_model, load_tokenizer
    from oxa.scoring import score_records
    from oxa.selection import SelectConfig, run_selection
    from oxa.verify import verify_records

    t, seed = run.config.train, run.config.seed
    scored = read_records(run.path("data/scored.jsonl"))
    n_queries = len({r["query_id"] for r in scored if r["correct"]})
    instruct_set = run_selection(scored, SelectConfig(input=run.path("data/scored.jsonl"),
                                                      output=run.path("data/instruct_set.jsonl"), method="random",
                                                      n=max(1, int(t.instruct_share * n_queries)), seed=seed + 1))
    write_records(run.path("data/instruct_set.jsonl"), instruct_set.records)
    instruct = _train(run, "instruct", "sft", "data/instruct_set.jsonl")

    queries = list({r["query_id"]: Problem.from_record(r).to_record() for r in scored}.values())[: t.distill_queries]
    samples = generate_records(queries, load_model(instruct), load_tokenizer(instruct, padding_side="left"),
                               n=t.samples, temperature=t.temperature, top_p=1.0, max_new_tokens=t.max_new_tokens,
                               seed=seed)
    graded, summary = verify_records(samples, workers=run.config.workers)
    base = run.done["base_model"]["model"]
    graded = score_records(graded, load_model(base), load_tokenizer(base), token_budget=run.config.token_budget)
    for r in graded:
        r["first_error"] = check_steps(r, r["response"]).first_error
    write_records(run.path("data/self_samples.jsonl"), graded)
    errors = run_selection(graded, SelectConfig(input=run.path("data/self_samples.jsonl"),
                                                output=run.path("data/ul_errors.jsonl"), method="errors",
                                                n=run.done["select"]["params"]["n"], min_ppl=t.min_error_ppl, seed=seed))
    write_records(run.path("data/ul_errors.jsonl"), errors.records)
    return {"outputs": ["data/instruct_set.jsonl", "data/self_samples.jsonl", "data/ul_errors.jsonl", instruct],
            "model": instruct,
            "counts": {"instruct_examples": len(instruct_set.records), "samples": len(graded),
                       "self_accuracy": round(summary["correct"] / max(1, len(graded)), 3),
                       "ul_errors": len(errors.records)}}


TRAIN_RUNS = {  # name -> (method, CE selection, with the UL set)
    "sft_lp": ("sft", "lowest", False),
    "sft": ("sft", "random", False),
    "oxa_mle": ("oxa-mle", "gaussian", False),
    "oxa_full": ("oxa-full", "gaussian", True),
}


def stage_train(run: Run) -> dict[str, Any]:
    models = {}
    for name, (method, selection, with_ul) in TRAIN_RUNS.items():
        models[name] = _train(run, name, method, f"data/ce_{selection}.jsonl", "data/ul_errors.jsonl" if with_ul else None)
    return {"outputs": list(models.values()), "models": models, "counts": {"runs": len(models)}}


def stage_evaluate(run: Run) -> dict[str, Any]:
    """Pass@k on the held-out benchmarks (``oxa eval``), plus the step checker's verdict on every sample."""
    from oxa.evaluation import EvalConfig, evaluate
    from oxa.report import build_report

    e = run.config.eval_config()
    models = {"base": run.done["base_model"]["model"], **run.done["train"]["models"]}
    counts = {}
    for name, model in models.items():
        shutil.rmtree(run.path(f"eval/{name}"), ignore_errors=True)  # samples of a model this stage replaces
        results = evaluate(EvalConfig(model=model, benchmarks=EVAL_BENCHMARKS, output=run.path(f"eval/{name}"), n=e.n,
                                      limit=e.problems_per_difficulty, temperature=e.temperature, top_p=e.top_p,
                                      max_new_tokens=e.max_new_tokens, seed=run.config.seed,
                                      workers=run.config.workers))
        samples = read_records(run.path(f"eval/{name}/samples.jsonl"))
        counts[name] = {"pass@1": round(results["average"]["pass@1"], 4),
                        f"pass@{e.n}": round(results["average"]["pass@n"], 4),
                        "all_steps_right": round(mean(check_steps(s, s["response"]).correct for s in samples), 4),
                        **{b: round(m["pass@1"], 4) for b, m in results["benchmarks"].items()}}
    build_report([run.path(f"eval/{name}") for name in models], run.path("eval"), names=list(models),
                 baseline=run.path("eval/base"), title="OXA demo: fine-tuned models on the synth benchmarks")
    return {"outputs": [f"eval/{name}/results.json" for name in models] + ["eval/report.md"], "counts": counts}


def stage_report(run: Run) -> dict[str, Any]:
    from oxa.plots import plot_ppl_histograms

    scored = read_records(run.path("data/scored.jsonl"))
    sel = json.loads(run.path("data/selections.json").read_text())
    correct = [r for r in scored if r["correct"] and r["ppl"] is not None]
    plot_ppl_histograms({f"{k} strategies": v for k, v in _by_familiarity(correct).items()},
                        run.path("plots/ppl_pool.png"), bin_edges=_edges(sel["params"]),
                        title="Base-model PPL of verified teacher trajectories, by how often pre-training saw the strategy")
    plot_ppl_histograms({"pool (verified)": [r["ppl"] for r in correct], **sel["ppl"]},
                        run.path("plots/ppl_selections.png"), bin_edges=_edges(sel["params"]),
                        title="PPL of the selections")
    write_text(run.path("report.md"), render_report(run, scored, sel))
    return {"outputs": ["report.md", "plots/ppl_pool.png", "plots/ppl_selections.png"], "counts": {}}


STAGES: list[Stage] = [
    Stage("world", stage_world, lambda c: c.world_config().model_dump()),
    Stage("base_model", stage_base_model, lambda c: c.base_config().key()),
    Stage("verify", stage_verify, lambda c: None, after=("world",)),
    Stage("score", stage_score, lambda c: c.token_budget, after=("verify", "base_model")),
    Stage("select", stage_select, lambda c: [c.seed, c.select_config().model_dump()], after=("score",)),
    Stage("distill", stage_distill, lambda c: [c.seed, c.train.model_dump()], after=("select",),
          enabled=lambda c: c.train.enabled),
    Stage("train", stage_train, lambda c: [c.seed, c.train.model_dump()], after=("distill",),
          enabled=lambda c: c.train.enabled),
    Stage("evaluate", stage_evaluate, lambda c: [c.seed, c.workers, c.eval_config().model_dump()], after=("train",),
          enabled=lambda c: c.train.enabled and c.eval_config().enabled),
    Stage("report", stage_report, lambda c: None, after=("select", "train", "evaluate")),
]


# ------------------------------------------------------------------------------------------- runner
def stage_key(stage: Stage, config: DemoConfig, keys: dict[str, str]) -> str:
    blob = json.dumps({"stage": stage.name, "settings": stage.settings(config),
                       "after": [keys.get(a) for a in stage.after]}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _outputs_exist(out: Path, entry: dict[str, Any]) -> bool:
    return all((out / p).exists() for p in entry.get("outputs", []))  # absolute paths stay absolute


def run_demo(config: DemoConfig, *, stages: list[Stage] | None = None, force: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) every stage in order; return the manifest (also written to ``<out>/manifest.json``)."""
    stages = [s for s in (STAGES if stages is None else stages) if s.enabled(config)]
    out = config.out.resolve()  # stages record model paths; relative ones would depend on the cwd
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
        "The pre-training share is how often the base model's corpus used the strategy for that family "
        "(0: never). Rarely seen strategies are the reasoning patterns it has not captured, which OXA's "
        "selection promotes.", "",
        "| family | strategy | pre-training share | n | median PPL | mean PPL |", "|---|---|---|---|---|---|",
    ]
    lines += [f"| {g['family']} | {g['strategy']} | {g['pretrain_share']:.1f} | {g['n']} | {g['median_ppl']:.3f} | "
              f"{g['mean_ppl']:.3f} |" for g in st["score"]["ppl_by_strategy"]]
    p = sel["params"]
    lines += ["", "## Selections", "",
              f"N = {p['n']} (one per query); Gaussian target mu = {p['mu']:.3f}, sigma = {p['sigma']:.3f}, "
              f"range [{p['ppl_min']:.2f}, {p['ppl_max']:.2f}], bin width {p['bin_width']:.4f}.", "",
              "| method | selected | median PPL | share of rare or unseen strategies |", "|---|---|---|---|"]
    lines += [f"| {m} | {c['selected']} | {_fmt(c['median_ppl'])} | {_fmt(c['rare_strategy_share'])} |"
              for m, c in sel["counts"].items()]
    if "train" in st:
        d = st["distill"]["counts"]
        lines += ["", "## Fine-tuning", "",
                  f"Instruction model for error mining: SFT on {d['instruct_examples']} random verified examples; "
                  f"{d['samples']} self-distilled samples, {d['self_accuracy']:.1%} correct; "
                  f"{d['ul_errors']} lowest-PPL errors form the UL set.", "",
                  "| run | method | CE data | UL data | model |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {m} | ce_{sel}.jsonl | {'ul_errors.jsonl' if ul else '-'} | `{st['train']['models'][name]}` |"
                  for name, (m, sel, ul) in TRAIN_RUNS.items()]
    if "evaluate" in st:
        ev = st["evaluate"]["counts"]
        cols = list(next(iter(ev.values())))
        lines += ["", "## Evaluation on the held-out benchmarks", "",
                  "Pass@1 / Pass@k averaged over synth-easy, -medium and -hard, each benchmark's Pass@1, and the "
                  "share of samples whose every step the step checker accepts (full tables and plots: "
                  "[eval/report.md](eval/report.md)).", "",
                  "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        lines += [f"| {name} | " + " | ".join(f"{100 * c[k]:.1f}" for k in cols) + " |" for name, c in ev.items()]
    lines += ["", "![PPL of the pool by familiarity](plots/ppl_pool.png)", "",
              "![PPL of the selections](plots/ppl_selections.png)", "", "## Stages", "",
              "| stage | seconds | reused |", "|---|---|---|"]
    lines += [f"| {name} | {e['seconds']:.1f} | {'yes' if e.get('reused') else 'no'} |" for name, e in st.items()]
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


def _brief(counts: dict[str, Any]) -> str:
    flat = {k: v for k, v in counts.items() if not isinstance(v, dict)}
    return "(" + ", ".join(f"{k} {v}" for k, v in flat.items()) + ")" if flat else ""
