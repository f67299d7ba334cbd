"""Why OXA trails on Pass@1 in the demo: fine-tuning budget, selection window, UL weight, learnability.

Reuses a finished ``oxa demo`` run directory (its base model, scored pool, selections and UL set) and
re-runs only what an experiment varies: each run is the demo recipe's own stage (its resolved settings in
the run's manifest.json: ``train_<x>``, ``select_gaussian``, ``rl_<x>``, ``eval_<x>``) with the varied
settings changed and a new output; the demo's own models and evaluations are reused where nothing is
varied. Every model is evaluated like the demo's (held-out synth-easy/-medium/-hard, same seed), and
compared with a paired bootstrap over problems (:mod:`oxa.evaluation.significance`). After training, the
held-out PPL of teacher trajectories per strategy familiarity (frequent / occasional / rare / unseen in
pre-training) says whether the model learnt the strategies it was fed.

    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo budget --epochs 2 6 12
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo mu --mu 2.0 2.5 3.5 5.0 --epochs 2 6
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo alpha --alpha 0.0001 0.001 0.01 0.03
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo strategies
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo usage    # after the others
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo rl --steps 30 --methods sft oxa_mle oxa_full

Models, evaluations and results go to ``--out`` (default ``RUN/investigation``): ``<experiment>.json``,
printed as a markdown table, ``train/<run>``, ``select/``, ``rl/<run>`` and ``eval/<run>``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import mean, median
from typing import Any

RUNS = ("sft_lp", "sft", "oxa_mle", "oxa_full")  # the demo's fine-tuning runs: stages train_<x>, eval_<x>, rl_<x>
MIX: dict = {}  # the run's pre-training mix (base_model stage): how often pre-training saw each strategy


class Demo:
    """A finished ``oxa demo`` run: its manifest's stages (resolved settings, outputs) and where new runs go."""

    def __init__(self, run_dir: Path, out: Path):
        manifest = json.loads((run_dir / "manifest.json").read_text())
        self.out, self.stages = out, manifest["stages"]
        for name in ("base_model", "score", "select_gaussian", *(f"{k}_{r}" for k in ("train", "eval") for r in RUNS)):
            if name not in self.stages:
                raise SystemExit(f"{run_dir}/manifest.json: no stage {name!r}; is this an `oxa demo` run directory?")

    def settings(self, stage: str) -> dict[str, Any]:
        return self.stages[stage]["settings"]

    def output(self, stage: str) -> str:
        return self.stages[stage]["output"]

    def rerun(self, stage: str, config_cls, output_field: str, target: Path, run: Callable[[Any], Any], *,
              done: str = "", **changes) -> str:
        """The demo's ``stage`` with ``changes`` to its settings, run by ``run`` into ``target`` (kept when
        ``target/done`` exists); the demo's own output when the changes change nothing."""
        own = config_cls.model_validate(self.settings(stage))
        if config_cls.model_validate({**self.settings(stage), **changes}) == own:
            return self.output(stage)
        if not (target / done).exists():
            run(config_cls.model_validate({**self.settings(stage), **changes, output_field: str(target)}))
        return str(target)


def train_model(demo: Demo, run: str, tag: str, **changes) -> str:
    """The demo's ``train_<run>`` stage with ``changes`` (TrainConfig fields), trained into OUT/train/<tag>."""
    from oxa.training import TrainConfig, train

    return demo.rerun(f"train_{run}", TrainConfig, "output_dir", demo.out / "train" / tag,
                      lambda cfg: train(cfg, log=lambda msg: None), done="oxa_train.json", **changes)


def eval_dir(demo: Demo, model: str, tag: str, like: str) -> Path:
    """The demo's evaluation (stage ``like``: same benchmarks, problems, samples, seed) of ``model`` in
    OUT/eval/<tag> (results.json, samples.jsonl); a model the demo evaluated keeps the demo's evaluation."""
    from oxa.evaluation import EvalConfig, evaluate
    from oxa.synth import register_benchmarks

    register_benchmarks()  # the demo's benchmarks: synth-easy, -medium, -hard
    for entry in demo.stages.values():
        if entry["kind"] == "eval" and Path(entry["settings"]["model"]) == Path(model):
            return Path(entry["output"])
    target = demo.out / "eval" / tag
    if not (target / "results.json").exists():
        evaluate(EvalConfig.model_validate({**demo.settings(like), "model": model, "output": str(target)}))
    return target


def evaluate_model(demo: Demo, model: str, tag: str, like: str) -> dict:
    """:func:`eval_dir`'s results.json."""
    return json.loads((eval_dir(demo, model, tag, like) / "results.json").read_text())


def heldout_trajectories(n_per_family: int = 30, seed: int = 123) -> list[dict]:
    """Held-out problems, each solved by every strategy that applies (no slips), with its familiarity."""
    from oxa.synth.corpus import familiarity, pretrain_share, sample_problem
    from oxa.synth.problems import FAMILIES
    from oxa.synth.teacher import solve, strategies_for

    rng, counts, out, i = random.Random(seed), defaultdict(int), [], 0
    while min(counts[f] for f in FAMILIES) < n_per_family:
        p = sample_problem(rng, i, prefix="inv", held=True)
        i += 1
        if counts[p.family] >= n_per_family:
            continue
        counts[p.family] += 1
        for s in strategies_for(p):
            share = pretrain_share(p.family, s, MIX)
            out.append({**p.to_record(), "id": f"{p.id}-{s}", "response": solve(p, s).response, "strategy": s,
                        "familiarity": familiarity(share)})
    return out


def heldout_ppl(model: str, records: list[dict]) -> dict[str, float]:
    """Median PPL of the held-out trajectories per familiarity class under ``model``."""
    from oxa.models import load_model, load_tokenizer
    from oxa.scoring import score_records

    scored = score_records(records, load_model(model), load_tokenizer(model), progress=False)
    groups = defaultdict(list)
    for r in scored:
        groups[r["familiarity"]].append(r["ppl"])
    return {k: round(median(v), 3) for k, v in sorted(groups.items())}


def summarize(results: dict) -> dict:
    b = results["benchmarks"]
    ent = [m["entropy"] for m in b.values()]
    return {"pass@1": round(100 * results["average"]["pass@1"], 1), "pass@4": round(100 * results["average"]["pass@n"], 1),
            "entropy": round(mean(ent), 3), **{k.removeprefix("synth-"): round(100 * m["pass@1"], 1) for k, m in b.items()}}


def versus(a: dict, b: dict, metric: str = "pass@1") -> str:
    """A - B with its 95 % interval (paired bootstrap over problems, one seed)."""
    from oxa.evaluation.significance import compare, metric_table

    c = compare("A", [metric_table(a, metric)], "B", [metric_table(b, metric)], metric, iterations=4000)
    return f"{100 * c.diff:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]"


def rows_table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def run_budget(demo: Demo, epochs: list[float], methods: list[str]) -> list[dict]:
    """Each method at each number of epochs; held-out PPL by familiarity after training; Pass@1 vs SFT."""
    heldout = heldout_trajectories()
    rows, results = [], {}
    base = demo.output("base_model")
    rows.append({"run": "base", "epochs": 0, **summarize(evaluate_model(demo, base, "base", "eval_base")),
                 **heldout_ppl(base, heldout)})
    for ep in epochs:
        for name in methods:
            tag = f"{name}_e{ep:g}"
            t0 = time.perf_counter()
            model = train_model(demo, name, tag, num_train_epochs=ep)
            res = results[tag] = evaluate_model(demo, model, tag, f"eval_{name}")
            rows.append({"run": name, "epochs": ep, **summarize(res), **heldout_ppl(model, heldout),
                         "seconds": round(time.perf_counter() - t0)})
            if name != "sft" and f"sft_e{ep:g}" in results:
                rows[-1]["pass@1 vs SFT"] = versus(res, results[f"sft_e{ep:g}"])
                rows[-1]["pass@4 vs SFT"] = versus(res, results[f"sft_e{ep:g}"], "pass@k")
            print(rows[-1], flush=True)
    return rows


def run_mu(demo: Demo, mus: list[float], epochs: list[float]) -> list[dict]:
    """OXA_MLE on Gaussian selections centred at each mu (the demo's other selection settings: select_gaussian)."""
    from oxa.io import read_records
    from oxa.selection import SelectConfig, select_file
    from oxa.synth.corpus import familiarity, pretrain_share

    sft = {ep: evaluate_model(demo, train_model(demo, "sft", f"sft_e{ep:g}", num_train_epochs=ep), f"sft_e{ep:g}",
                              "eval_sft") for ep in epochs}
    rows = []
    for mu in mus:
        target = demo.out / "select" / f"gaussian_mu{mu:g}.jsonl"
        path = demo.rerun("select_gaussian", SelectConfig, "output", target, select_file, mu=mu)
        sel = read_records(path)
        rare = mean(familiarity(pretrain_share(r["family"], r["strategy"], MIX)) in ("rare", "unseen") for r in sel)
        for ep in epochs:
            tag = f"oxa_mle_mu{mu:g}_e{ep:g}"
            res = evaluate_model(demo, train_model(demo, "oxa_mle", tag, ce_data=path, num_train_epochs=ep), tag,
                                 "eval_oxa_mle")
            rows.append({"mu": mu, "epochs": ep, "selected": len(sel), "median PPL": round(median(r["ppl"] for r in sel), 2),
                         "rare or unseen": f"{100 * rare:.0f}%", **summarize(res),
                         "pass@1 vs SFT": versus(res, sft[ep]), "pass@4 vs SFT": versus(res, sft[ep], "pass@k")})
            print(rows[-1], flush=True)
    return rows


def run_alpha(demo: Demo, alphas: list[float], epochs: float) -> list[dict]:
    """OXA_Full at each UL weight against OXA_MLE (alpha 0) on the same Gaussian selection."""
    mle = evaluate_model(demo, train_model(demo, "oxa_mle", f"oxa_mle_e{epochs:g}", num_train_epochs=epochs),
                         f"oxa_mle_e{epochs:g}", "eval_oxa_mle")
    rows = [{"alpha": 0, "epochs": epochs, **summarize(mle)}]
    for alpha in alphas:
        tag = f"oxa_full_a{alpha:g}_e{epochs:g}"
        res = evaluate_model(demo, train_model(demo, "oxa_full", tag, num_train_epochs=epochs, alpha=alpha), tag,
                             "eval_oxa_full")
        rows.append({"alpha": alpha, "epochs": epochs, **summarize(res), "pass@1 vs OXA_MLE": versus(res, mle),
                     "pass@4 vs OXA_MLE": versus(res, mle, "pass@k")})
        print(rows[-1], flush=True)
    return rows


def run_strategies(demo: Demo) -> list[dict]:
    """Per strategy of the verified pool: pre-training share, base PPL, length in tokens and steps."""
    from oxa.io import read_records
    from oxa.synth.corpus import pretrain_share

    groups = defaultdict(list)
    for r in read_records(demo.output("score")):
        if r["correct"] and r["ppl"] is not None:
            groups[r["family"], r["strategy"], pretrain_share(r["family"], r["strategy"], MIX)].append(r)
    rows = []
    for (family, strategy, share), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][2])):
        steps = [len(r["response"].split("</think>")[0].strip().splitlines()) - 1 for r in rs]
        rows.append({"family": family, "strategy": strategy, "pre-training share": share, "n": len(rs),
                     "median PPL": round(median(r["ppl"] for r in rs), 2),
                     "mean tokens": round(mean(r["n_tokens"] for r in rs), 1), "mean steps": round(mean(steps), 1)})
    return rows


def _shape(text: str) -> set[str]:
    """A response's lines with every number masked: what a strategy writes, whatever the values."""
    import re

    return {re.sub(r"-?\d+", "#", line.strip()) for line in text.splitlines() if line.strip()}


def strategy_used(sample: dict) -> str:
    """The teacher strategy whose solution of the sample's problem has the most similar line shapes."""
    from oxa.synth.problems import Problem
    from oxa.synth.teacher import solve, strategies_for

    p, mine = Problem.from_record(sample), _shape(sample["response"])
    scores = {st: len(mine & (ref := _shape(solve(p, st).response))) / len(mine | ref) for st in strategies_for(p)}
    return max(scores, key=scores.get)


def run_usage(evals: dict[str, Path]) -> list[dict]:
    """Per evaluated model: which strategies its samples follow (by familiarity) and how often each is right."""
    from oxa.io import read_records
    from oxa.synth.corpus import familiarity, pretrain_share

    rows = []
    for name, d in evals.items():
        samples = read_records(d / "samples.jsonl")
        groups = defaultdict(list)
        for smp in samples:
            groups[familiarity(pretrain_share(smp["family"], strategy_used(smp), MIX))].append(smp)
        row = {"model": name, "mean tokens": round(mean(x["n_tokens"] for x in samples), 1)}
        for k in ("frequent", "occasional", "rare", "unseen"):
            g = groups.get(k, [])
            row[f"{k} share"] = f"{100 * len(g) / len(samples):.0f}%"
            row[f"{k} pass@1"] = f"{100 * mean(x['correct'] for x in g):.1f}" if g else "–"
        rows.append(row)
        print(row, flush=True)
    return rows


def run_rl(demo: Demo, methods: list[str], steps: int) -> list[dict]:
    """GRPO from each fine-tuned model as the demo's ``rl_<x>`` stage runs it, for ``steps`` steps, then the demo's
    evaluation of the result (``eval_rl_<x>``'s settings), and the paper's claims over the demo's base and
    fine-tuned models and these."""
    from oxa.evaluation.claims import SeedRun, claims_markdown, evaluate_claims
    from oxa.evaluation.significance import entropy_table
    from oxa.io import read_records
    from oxa.rl.config import RLConfig
    from oxa.rl.run import train_rl

    runs = {name: Path(demo.output(f"eval_{name}")) for name in ["base", *RUNS]}
    rows = []
    for name in methods:
        t0 = time.perf_counter()
        tag = f"rl_{name}_s{steps}"
        model = demo.rerun(f"rl_{name}", RLConfig, "output_dir", demo.out / "rl" / tag,
                           lambda cfg: train_rl(cfg, log=lambda msg: None), done="oxa_rl.json", max_steps=steps)
        runs[f"{name}_rl"] = eval_dir(demo, model, tag, f"eval_rl_{name}")
        res = json.loads((runs[f"{name}_rl"] / "results.json").read_text())
        rows.append({"run": f"{name}+RL", "steps": steps, **summarize(res),
                     "seconds": round(time.perf_counter() - t0)})
        print(rows[-1], flush=True)
    methods_runs = {k: [SeedRun(json.loads((d / "results.json").read_text()), entropy_table(read_records(d / "samples.jsonl")))]
                    for k, d in runs.items()}
    print(claims_markdown(evaluate_claims(methods_runs)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished `oxa demo` run directory (only read)")
    ap.add_argument("experiment", choices=["budget", "mu", "alpha", "strategies", "usage", "rl"])
    ap.add_argument("--out", type=Path, default=None, help="where models, evaluations and results go "
                    "(default RUN/investigation)")
    ap.add_argument("--epochs", type=float, nargs="+", default=[2.0, 6.0, 12.0], help="fine-tuning epochs "
                    "(alpha: the first)")
    ap.add_argument("--methods", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--mu", type=float, nargs="+", default=[2.0, 2.5, 3.5, 5.0])
    ap.add_argument("--alpha", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 3e-2])
    ap.add_argument("--steps", type=int, default=30, help="rl: GRPO steps per model")
    args = ap.parse_args()
    run_dir = args.run.resolve()  # models and data are passed on as absolute paths
    demo = Demo(run_dir, (args.out or run_dir / "investigation").resolve())
    MIX.update(demo.settings("base_model")["mix"])
    if args.experiment == "budget":
        rows = run_budget(demo, args.epochs, args.methods)
    elif args.experiment == "mu":
        rows = run_mu(demo, args.mu, args.epochs)
    elif args.experiment == "alpha":
        rows = run_alpha(demo, args.alpha, args.epochs[0])
    elif args.experiment == "rl":
        rows = run_rl(demo, args.methods, args.steps)
    elif args.experiment == "usage":
        evals = {name: Path(e["output"]) for name, e in demo.stages.items() if e["kind"] == "eval"}
        evals |= {f"{demo.out.name}/{p.parent.name}": p.parent for p in sorted(demo.out.glob("eval/*/samples.jsonl"))}
        rows = run_usage(evals)
    else:
        rows = run_strategies(demo)
    demo.out.mkdir(parents=True, exist_ok=True)
    (demo.out / f"{args.experiment}.json").write_text(json.dumps(rows, indent=1))
    print(rows_table(rows, list(dict.fromkeys(k for r in rows for k in r))))


if __name__ == "__main__":
    main()
