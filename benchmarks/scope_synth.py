"""GRPO against GRPO + SCOPE on the synthetic world, from the same start with the same budget, and the
salvage checked against independent graders.

The arms are the repository's presets (``configs/rl-synth.yaml`` and ``configs/rl-synth-scope.yaml``; the
third arm is the SCOPE preset with ``scope.placement: join``) with only the start, the prompts, the run
directory, the seed, the step budget and the evaluation schedule overridden, one run per (arm, seed);
finished runs are reused. Then, over the arms trained (``grpo`` among them):

* the salvage check, per SCOPE arm, over every attempt it logged (``salvage.jsonl``): the share of failed rollouts
  salvaged; every rollout that replaced a failure regraded by ``oxa verify`` (``</think>`` required, as
  the reward) and by the world's step checker (``oxa.synth.checker.check_steps``, every line right); and
  the first error the PRM located against the one ``check_steps`` finds in the original response;
* the comparison: held-out Pass@1 (the mean over synth-easy / medium / hard, the paper's Avg.) at the
  start, at the end and at its best, the training reward of the rollouts as sampled (SCOPE's
  ``reward_mean`` counts its salvages), and group diversity (distinct final answers and
  teacher strategies per group of sampled rollouts), averaged over seeds;
* the curves (reward, entropy, diversity, salvaged rollouts, held-out Pass@1) as ``--png``.

    oxa demo --out runs/demo
    python benchmarks/scope_synth.py --demo runs/demo --out /tmp/scope --seeds 0 1 --steps 60
    # or the arms side by side in two processes, then the comparison (finished runs are reused):
    python benchmarks/scope_synth.py --arms grpo ... & python benchmarks/scope_synth.py --arms grpo+scope ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"grpo": ("rl-synth.yaml", {}), "grpo+scope": ("rl-synth-scope.yaml", {}),
        "grpo+scope-join": ("rl-synth-scope.yaml", {"placement": "join"})}  # arm: (preset, scope overrides)
SAMPLED = "Reward of the sampled rollouts (mean)"


def arm_config(arm: str, args, seed: int, first: bool):
    from oxa.config import load_yaml, validate
    from oxa.rl import RLConfig

    preset, scope = ARMS[arm]
    path = ROOT / "configs" / preset
    cfg = validate(RLConfig, load_yaml(path), source=str(path))
    ev = cfg.eval.model_copy(update={"every": args.eval_every, "n": args.eval_n, "at_start": first})
    return cfg.model_copy(update={
        "model": str(args.demo / f"train_{args.start}"), "prompts": str(args.prompts),
        "output_dir": args.out / f"{arm}-seed{seed}", "seed": seed, "max_steps": args.steps, "save_steps": None,
        "eval": ev, "scope": cfg.scope.model_copy(update=scope)})


def run_all(args) -> dict[str, list[Path]]:
    from oxa.rl import train_rl

    runs: dict[str, list[Path]] = {arm: [] for arm in args.arms}
    for n, seed in enumerate(args.seeds):
        for arm in args.arms:
            cfg = arm_config(arm, args, seed, first=n == 0 and arm == "grpo")
            out = Path(cfg.output_dir)
            if not (out / "oxa_rl.json").exists():
                started = time.time()
                print(f"== {arm} seed {seed}: {args.steps} steps -> {out}", flush=True)
                train_rl(cfg, log=lambda *a: print(*a, flush=True))
                print(f"   {time.time() - started:.0f} s", flush=True)
            runs[arm].append(out)
    return runs


def salvage_check(run_dirs: list[Path]) -> dict:
    """The salvage attempts of SCOPE's runs, regraded and relocated independently."""
    from oxa.io import read_records
    from oxa.prm.checker import SYNTH_SPLIT, problem_of
    from oxa.prm.steps import split_steps
    from oxa.rl.prompts import load_prompts
    from oxa.synth.checker import check_steps
    from oxa.verify import verify_records

    attempts, failed = [], 0.0
    for d in run_dirs:
        cfg = json.loads((d / "oxa_rl.json").read_text())["config"]
        problems = {str(r["id"]): r for r in load_prompts(cfg["prompts"])}
        attempts += [{**problems[str(a["id"])], **a, "run": d.name} for a in read_records(d / "salvage.jsonl")]
        failed += sum(r.get("salvage/failed", 0.0) for r in read_records(d / "rl_metrics.jsonl"))
    replaced = [a for a in attempts if a.get("replaced") or a.get("joined")]  # the salvages that were trained
    graded, _ = verify_records([{**a, "response": a["salvaged"]} for a in replaced], workers=1, progress=False,
                               require_think=True)
    all_steps_right = [check_steps(problem_of(a), a["salvaged"]).correct for a in replaced]
    agree = 0
    for a in attempts:  # check_steps' first error: an index into its arithmetic lines, len(...) = the answer
        report = check_steps(problem_of(a), a["response"])
        steps = split_steps(a["response"], SYNTH_SPLIT)
        located = steps[a["first_error"]]
        if report.first_error is None:
            continue
        if report.first_error == len(report.steps):
            agree += located.answer
        else:
            agree += located.text == report.steps[report.first_error].line.strip() and not located.answer
    positions = [a["relative_position"] for a in attempts]
    return {"failed_rollouts": int(failed), "attempts": len(attempts), "replaced": len(replaced),
            "salvaged_share_of_failed": len(replaced) / max(failed, 1),
            "replaced_verify_correct": sum(bool(g["correct"]) for g in graded),
            "replaced_all_steps_right": sum(all_steps_right),
            "first_error_matches_check_steps": agree,
            "first_error_position_quartiles": [round(q, 3) for q in statistics.quantiles(positions, n=4)]
            if len(positions) > 1 else positions,
            "off_policy_tokens_per_salvage": statistics.mean(a["off_policy_tokens"] for a in replaced)
            if replaced else 0}


def run_summary(d: Path) -> dict:
    """One run: held-out Pass@1 (after training) at the end and at its best; means over the steps of the rest."""
    from oxa.report import load_rl_run

    r = load_rl_run(d)

    def mean(key: str) -> float | None:
        values = r.series(key)[1]
        return float(statistics.mean(values)) if len(values) else None

    evals, p1 = r.series("eval/average/pass@1")
    trained = p1[evals > 0]
    train_rows = [row for row in r.rows if "reward_mean" in row]
    sampled = mean("salvage/sampled_reward_mean")  # SCOPE's reward_mean counts its salvages
    return {"run": d.name, "steps": max(row["step"] for row in train_rows),
            "pass1_end": float(trained[-1]) if len(trained) else None,
            "pass1_best": float(trained.max()) if len(trained) else None,
            "reward": mean("reward_mean") if sampled is None else sampled, "reward_trained": mean("reward_mean"),
            "distinct_answers": mean("diversity/distinct_answers"), "distinct_paths": mean("diversity/distinct_paths"),
            "entropy": mean("entropy"), "salvaged_per_step": mean("salvage/successes"),
            "prm_flagged_successes": mean("prm/flagged_successes"), "prm_missed_failures": mean("prm/missed_failures"),
            "seconds_per_step": statistics.mean(sum(row.get(f"seconds_{k}", 0.0) for k in ("generation", "grading",
                                                                                             "update"))
                                                for row in train_rows)}


def summarise(runs: dict[str, list[Path]], start_pass1: float | None) -> dict:
    out = {}
    for arm, dirs in runs.items():
        per_seed = [run_summary(d) for d in dirs]
        avg = {k: statistics.mean(s[k] for s in per_seed) for k in per_seed[0]
               if all(isinstance(s[k], (int, float)) for s in per_seed)}
        out[arm] = {"seeds": per_seed, "mean": avg}
    out["start_pass1"] = start_pass1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("runs/demo"), help="an `oxa demo` run directory")
    ap.add_argument("--start", default="oxa_full", help="the demo model RL starts from (DEMO/train_<start>)")
    ap.add_argument("--prompts", type=Path, help="RL prompts (default: the world's whole RL split, DEMO/world/rl.jsonl)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/scope-synth"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--eval-n", type=int, default=4, help="samples per held-out problem")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                    help="train these arms (processes can train one each); the comparison needs grpo and a SCOPE arm")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "scope_synth_curves.png")
    ap.add_argument("--smooth", type=int, default=5)
    args = ap.parse_args()
    args.prompts = args.prompts or args.demo / "world" / "rl.jsonl"

    from oxa.report import load_rl_run, plot_rl_curves

    runs = run_all(args)
    scope_arms = [a for a in runs if a != "grpo"]
    if "grpo" not in runs or not scope_arms:
        return
    start = load_rl_run(runs["grpo"][0]).series("eval/average/pass@1")
    results = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "salvage": {arm: salvage_check(runs[arm]) for arm in scope_arms},
               "comparison": summarise(runs, float(start[1][0]) if len(start[0]) and start[0][0] == 0 else None)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    curves = [load_rl_run(d, f"{arm} s{args.seeds[i]}") for arm, dirs in runs.items() for i, d in enumerate(dirs)]
    start_row = next(r for r in load_rl_run(runs["grpo"][0]).rows if r["step"] == 0)  # the same start for all
    for c in curves:
        for r in c.rows:  # SCOPE's reward_mean counts its salvages: compare the rollouts as sampled
            if "reward_mean" in r:
                r[SAMPLED] = r.get("salvage/sampled_reward_mean", r["reward_mean"])
        if all(r["step"] for r in c.rows):
            c.rows.insert(0, start_row)
    plot_rl_curves(curves, args.png, smooth=args.smooth,
                   metrics=(SAMPLED, "diversity/distinct_answers", "diversity/distinct_paths", "entropy",
                            "salvage/successes"), benchmarks=["average"])

    for arm, s in results["salvage"].items():
        print(f"{arm} salvage: {s['replaced']} of {s['failed_rollouts']} failed rollouts salvaged "
              f"({100 * s['salvaged_share_of_failed']:.1f}%; {s['attempts']} located and corrected); regraded correct: "
              f"{s['replaced_verify_correct']}/{s['replaced']} by oxa verify, {s['replaced_all_steps_right']}/"
              f"{s['replaced']} every step right; first error = check_steps': {s['first_error_matches_check_steps']}/"
              f"{s['attempts']}; relative position quartiles {s['first_error_position_quartiles']}")
    c = results["comparison"]
    print(f"held-out Pass@1 at the start: {c['start_pass1']}")
    for arm in scope_arms:
        print(f"PRM against the verifier ({arm}): {c[arm]['mean'].get('prm_flagged_successes')} of correct rollouts "
              f"flagged, {c[arm]['mean'].get('prm_missed_failures')} of failures missed")
    print(f"{'arm':<16}{'Pass@1 end':>11}{'best':>8}{'reward':>8}{'answers':>9}{'paths':>7}{'entropy':>9}"
          f"{'salvaged':>10}{'s/step':>8}")
    for arm in runs:
        m = c[arm]["mean"]
        f = lambda k, pct=False: "-" if m.get(k) is None else (f"{100 * m[k]:.1f}%" if pct else f"{m[k]:.3f}")  # noqa: E731
        print(f"{arm:<16}{f('pass1_end', True):>11}{f('pass1_best', True):>8}{f('reward'):>8}"
              f"{f('distinct_answers'):>9}{f('distinct_paths'):>7}{f('entropy'):>9}{f('salvaged_per_step'):>10}"
              f"{f('seconds_per_step'):>8}")
        for sd in c[arm]["seeds"]:
            print(f"   {sd['run']}: Pass@1 end {sd['pass1_end']}, best {sd['pass1_best']}, reward {sd['reward']:.3f}, "
                  f"answers {sd['distinct_answers']:.3f}, paths {sd['distinct_paths']:.3f}")
    print(f"curves: {args.png}; results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
