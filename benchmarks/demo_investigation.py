"""Why OXA trails on Pass@1 in the demo: fine-tuning budget, selection window, UL weight, learnability.

Reuses a finished ``oxa demo`` run directory (its base model, scored pool, selections and UL set) and
re-runs only fine-tuning and evaluation, with the demo's own training and evaluation settings except
the one varied. Every model is evaluated like the demo's (held-out synth-easy/-medium/-hard, same
seed), and compared with a paired bootstrap over problems (:mod:`oxa.evaluation.significance`).
After training, the held-out PPL of teacher trajectories per strategy familiarity (frequent /
occasional / rare / unseen in pre-training) says whether the model learnt the strategies it was fed.

    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo budget --epochs 2 6 12
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo mu --mu 2.0 2.5 3.5 5.0 --epochs 2 6
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo alpha --alpha 0.0001 0.001 0.01 0.03
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo strategies
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo usage    # after the others
    OMP_NUM_THREADS=1 python benchmarks/demo_investigation.py runs/demo rl --steps 30 --methods sft oxa_mle oxa_full

Results go to ``RUN/investigation/<experiment>.json`` and are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean, median


def load_demo(run_dir: Path):
    from oxa.demo import DemoConfig

    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = DemoConfig.model_validate({**manifest["config"], "out": str(run_dir)})
    return config, manifest["stages"]


def train_model(config, stages, out: Path, name: str, method: str, ce: Path, ul: Path | None, *, demo: str | None = None,
                **train) -> str:
    """One fine-tuning run exactly as the demo's ``train`` stage runs it, with ``train`` settings overridden
    (the demo's own model ``demo`` when nothing is)."""
    from oxa.demo import Run, _train

    cfg = config.model_copy(update={"out": out, "train": config.train.model_copy(update=train)})
    if cfg.train == config.train and demo in stages["train"]["models"]:  # the demo trained this one already
        return stages["train"]["models"][demo]
    if (out / "models" / name / "config.json").exists():
        return str(out / "models" / name)
    return _train(Run(cfg, out, {"base_model": stages["base_model"]}), name, method, str(ce), str(ul) if ul else None)


def evaluate_model(config, model: str, out: Path) -> dict:
    """The demo's evaluation (same benchmarks, problems, samples, seed); results.json plus per-problem tables."""
    from oxa.demo import EVAL_BENCHMARKS
    from oxa.evaluation import EvalConfig, evaluate

    e = config.eval_config()
    demo_eval = Path(config.out) / "eval" / Path(model).name / "results.json"
    if Path(model).resolve().parent == (Path(config.out) / "models").resolve() and demo_eval.exists():
        return json.loads(demo_eval.read_text())
    if (out / "results.json").exists():
        return json.loads((out / "results.json").read_text())
    return evaluate(EvalConfig(model=model, benchmarks=EVAL_BENCHMARKS, output=out, n=e.n, limit=e.problems_per_difficulty,
                               temperature=e.temperature, top_p=e.top_p, max_new_tokens=e.max_new_tokens,
                               seed=config.seed, workers=1, progress=False))


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


MIX: dict = {}  # the run's pre-training mix (the world's records label strategies by the default one)
RUNS = {"sft_lp": ("sft", "lowest"), "sft": ("sft", "random"), "oxa_mle": ("oxa-mle", "gaussian"),
        "oxa_full": ("oxa-full", "gaussian")}


def rows_table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def run_budget(config, stages, run_dir: Path, out: Path, epochs: list[float], methods: list[str]) -> list[dict]:
    """Each method at each number of epochs; held-out PPL by familiarity after training; Pass@1 vs SFT."""
    heldout = heldout_trajectories()
    rows, results = [], {}
    base_eval = json.loads((run_dir / "eval/base/results.json").read_text())
    rows.append({"run": "base", "epochs": 0, **summarize(base_eval), **heldout_ppl(stages["base_model"]["model"], heldout)})
    for ep in epochs:
        for name in methods:
            method, sel = RUNS[name]
            tag = f"{name}_e{ep:g}"
            t0 = time.perf_counter()
            model = train_model(config, stages, out, tag, method, run_dir / f"data/ce_{sel}.jsonl",
                                run_dir / "data/ul_errors.jsonl" if name == "oxa_full" else None, demo=name, epochs=ep)
            res = results[tag] = evaluate_model(config, model, out / "eval" / tag)
            rows.append({"run": name, "epochs": ep, **summarize(res), **heldout_ppl(model, heldout),
                         "seconds": round(time.perf_counter() - t0)})
            if name != "sft" and f"sft_e{ep:g}" in results:
                rows[-1]["pass@1 vs SFT"] = versus(res, results[f"sft_e{ep:g}"])
                rows[-1]["pass@4 vs SFT"] = versus(res, results[f"sft_e{ep:g}"], "pass@k")
            print(rows[-1], flush=True)
    return rows


def run_mu(config, stages, run_dir: Path, out: Path, mus: list[float], epochs: list[float]) -> list[dict]:
    """OXA_MLE on Gaussian selections centred at each mu (the demo's other selection settings)."""
    from oxa.io import read_records, write_records
    from oxa.selection import SelectConfig, run_selection
    from oxa.synth.corpus import familiarity, pretrain_share

    scored = read_records(run_dir / "data/scored.jsonl")
    params = json.loads((run_dir / "data/selections.json").read_text())["params"]
    sft = {ep: evaluate_model(config, train_model(config, stages, out, f"sft_e{ep:g}", "sft",
                                                  run_dir / "data/ce_random.jsonl", None, demo="sft",
                                                  epochs=ep),
                              out / "eval" / f"sft_e{ep:g}") for ep in epochs}
    rows = []
    for mu in mus:
        path = out / "data" / f"ce_gaussian_mu{mu:g}.jsonl"
        sel = run_selection(scored, SelectConfig(input=run_dir / "data/scored.jsonl", output=path, method="gaussian",
                                                 seed=config.seed, redistribute=True, **{**params, "mu": mu})).records
        write_records(path, sel)
        rare = mean(familiarity(pretrain_share(r["family"], r["strategy"], MIX)) in ("rare", "unseen") for r in sel)
        for ep in epochs:
            model = train_model(config, stages, out, f"oxa_mle_mu{mu:g}_e{ep:g}", "oxa-mle", path, None, epochs=ep)
            res = evaluate_model(config, model, out / "eval" / f"oxa_mle_mu{mu:g}_e{ep:g}")
            rows.append({"mu": mu, "epochs": ep, "selected": len(sel), "median PPL": round(median(r["ppl"] for r in sel), 2),
                         "rare or unseen": f"{100 * rare:.0f}%", **summarize(res),
                         "pass@1 vs SFT": versus(res, sft[ep]), "pass@4 vs SFT": versus(res, sft[ep], "pass@k")})
            print(rows[-1], flush=True)
    return rows


def run_alpha(config, stages, run_dir: Path, out: Path, alphas: list[float], epochs: float) -> list[dict]:
    """OXA_Full at each UL weight against OXA_MLE (alpha 0) on the same Gaussian selection."""
    mle = evaluate_model(config, train_model(config, stages, out, f"oxa_mle_e{epochs:g}", "oxa-mle",
                                             run_dir / "data/ce_gaussian.jsonl", None, demo="oxa_mle",
                                             epochs=epochs),
                         out / "eval" / f"oxa_mle_e{epochs:g}")
    rows = [{"alpha": 0, "epochs": epochs, **summarize(mle)}]
    for alpha in alphas:
        tag = f"oxa_full_a{alpha:g}_e{epochs:g}"
        model = train_model(config, stages, out, tag, "oxa-full", run_dir / "data/ce_gaussian.jsonl",
                            run_dir / "data/ul_errors.jsonl", epochs=epochs, alpha=alpha)
        res = evaluate_model(config, model, out / "eval" / tag)
        rows.append({"alpha": alpha, "epochs": epochs, **summarize(res), "pass@1 vs OXA_MLE": versus(res, mle),
                     "pass@4 vs OXA_MLE": versus(res, mle, "pass@k")})
        print(rows[-1], flush=True)
    return rows


def run_strategies(run_dir: Path) -> list[dict]:
    """Per strategy of the verified pool: pre-training share, base PPL, length in tokens and steps."""
    from oxa.io import read_records
    from oxa.synth.corpus import pretrain_share

    groups = defaultdict(list)
    for r in read_records(run_dir / "data/scored.jsonl"):
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


def run_usage(eval_dirs: list[Path]) -> list[dict]:
    """Per evaluated model: which strategies its samples follow (by familiarity) and how often each is right."""
    from oxa.io import read_records
    from oxa.synth.corpus import familiarity, pretrain_share

    rows = []
    for d in eval_dirs:
        samples = read_records(d / "samples.jsonl")
        groups = defaultdict(list)
        for smp in samples:
            groups[familiarity(pretrain_share(smp["family"], strategy_used(smp), MIX))].append(smp)
        row = {"model": f"{d.parent.parent.name}/{d.name}" if d.parent.parent.name == "investigation" else d.name,
               "mean tokens": round(mean(x["n_tokens"] for x in samples), 1)}
        for k in ("frequent", "occasional", "rare", "unseen"):
            g = groups.get(k, [])
            row[f"{k} share"] = f"{100 * len(g) / len(samples):.0f}%"
            row[f"{k} pass@1"] = f"{100 * mean(x['correct'] for x in g):.1f}" if g else "–"
        rows.append(row)
        print(row, flush=True)
    return rows


def run_rl(config, stages, run_dir: Path, out: Path, methods: list[str], steps: int) -> list[dict]:
    """GRPO (configs/rl-synth.yaml, ``steps`` steps, on the world's RL split) from each fine-tuned model, then
    the demo's evaluation of the result in RUN/eval/<model>_rl, and the paper's claims over the demo's models
    and these (a later ``oxa demo --seeds`` report includes them)."""
    import yaml

    from oxa.evaluation.claims import SeedRun, claims_markdown, evaluate_claims
    from oxa.evaluation.significance import entropy_table
    from oxa.io import read_records
    from oxa.rl.config import RLConfig
    from oxa.rl.run import train_rl

    preset = yaml.safe_load((Path(__file__).parents[1] / "configs/rl-synth.yaml").read_text())
    runs, rows = {}, []
    for name in ["base", "sft_lp", "sft", "oxa_mle", "oxa_full"]:
        runs[name] = run_dir / "eval" / name
    for name in methods:
        t0 = time.perf_counter()
        target = out / "rl" / name
        if not (target / "config.json").exists():
            cfg = RLConfig.model_validate({**preset, "model": stages["train"]["models"][name], "output_dir": str(target),
                                           "prompts": str(run_dir / "world/rl.jsonl"), "max_steps": steps, "seed": config.seed,
                                           "save_steps": None, "eval": {"benchmarks": []}})
            train_rl(cfg, log=lambda msg: None)
        runs[f"{name}_rl"] = run_dir / "eval" / f"{name}_rl"  # beside the demo's: `oxa demo --seeds` reports it
        res = evaluate_model(config, str(target), runs[f"{name}_rl"])
        rows.append({"run": f"{name}+RL", "steps": steps, **summarize(res), "seconds": round(time.perf_counter() - t0)})
        print(rows[-1], flush=True)
    methods_runs = {k: [SeedRun(json.loads((d / "results.json").read_text()), entropy_table(read_records(d / "samples.jsonl")))]
                    for k, d in runs.items()}
    print(claims_markdown(evaluate_claims(methods_runs)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished `oxa demo` run directory")
    ap.add_argument("experiment", choices=["budget", "mu", "alpha", "strategies", "usage", "rl"])
    ap.add_argument("--epochs", type=float, nargs="+", default=[2.0, 6.0, 12.0])
    ap.add_argument("--methods", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--mu", type=float, nargs="+", default=[2.0, 2.5, 3.5, 5.0])
    ap.add_argument("--alpha", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 3e-2])
    ap.add_argument("--steps", type=int, default=30, help="rl: GRPO steps per model")
    args = ap.parse_args()
    args.run = args.run.resolve()  # models and data are passed on as absolute paths
    config, stages = load_demo(args.run)
    MIX.update(config.base_config().mix)
    out = args.run / "investigation"
    if args.experiment == "budget":
        rows = run_budget(config, stages, args.run, out, args.epochs, args.methods)
    elif args.experiment == "mu":
        rows = run_mu(config, stages, args.run, out, args.mu, args.epochs)
    elif args.experiment == "alpha":
        rows = run_alpha(config, stages, args.run, out, args.alpha, args.epochs[0])
    elif args.experiment == "rl":
        rows = run_rl(config, stages, args.run, out, args.methods, args.steps)
    elif args.experiment == "usage":
        rows = run_usage(sorted(p.parent for p in args.run.glob("eval/*/samples.jsonl"))
                         + sorted(p.parent for p in out.glob("eval/*/samples.jsonl")))
    else:
        rows = run_strategies(args.run)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.experiment}.json").write_text(json.dumps(rows, indent=1))
    print(rows_table(rows, list(dict.fromkeys(k for r in rows for k in r))))


if __name__ == "__main__":
    main()
