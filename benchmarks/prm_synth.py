"""How far to trust a PRM on the synthetic world, and how often the teacher's correction salvages a failure.

Side by side on the same held-out planted-error trajectories (one right trajectory and one per slip
kind per problem):

* ProcessBench-style accuracies (first error exact on wrong ones, no error flagged on right ones, F1)
  of the exact step checker, of a separator-style PRM trained here from the synthetic base model, and
  of that PRM before training (its random head);
* salvage: the PRM locates the first error of each wrong trajectory and the teacher rewrites that
  step; reported are where the located error sits against the planted one, how often the kept prefix
  plus the corrected step is all right (what the policy would continue from), and how often the
  teacher, finishing from there, writes a solution the step checker and ``oxa verify`` accept - with
  the exact checker and with the trained PRM locating the error.

* with ``--policy-problems N``: the salvage loop without a trainer - the base model answers held-out
  problems, each failure is cut at the checker's first error, the teacher rewrites that step, the
  same model continues on-policy, and the result is graded as the RL reward grades.

    python benchmarks/prm_synth.py --out /tmp/prm-bench                     # base model from the cache
    python benchmarks/prm_synth.py --base DIR --problems 600 --epochs 3 --bench 200 --policy-problems 120
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path


def salvage_shares(prm, records, threshold: float) -> dict[str, float]:
    """On the wrong trajectories: where the PRM puts the first error against the planted one (exact, too
    early, too late, nowhere); whether the kept prefix plus the teacher's corrected step is all right
    (what the policy would continue from); whether the correction changed the step; and whether the
    teacher, finishing from there, writes a solution the step checker and ``oxa verify`` accept."""
    from oxa.prm import CheckerPRM, TeacherCorrector, apply_corrections, locate_errors
    from oxa.prm.checker import SYNTH_SPLIT, problem_of
    from oxa.synth.checker import check_steps
    from oxa.synth.prefix import finish
    from oxa.verify import verify_records

    wrong = [r for r in records if r["error_kind"] != "none"]
    items = prm.inputs([r["query"] for r in wrong], [r["response"] for r in wrong], wrong, split=SYNTH_SPLIT)
    requests = locate_errors(prm, items, threshold=threshold)
    salvaged = apply_corrections(TeacherCorrector(), requests, "\n")
    checker, counts, finished = CheckerPRM(), Counter(), []
    for r, q, s in zip(wrong, requests, salvaged, strict=True):
        where = "missed" if q is None else "exact" if q.error == r["label"] else "early" if q.error < r["label"] else "late"
        counts[where] += 1
        if s is not None:
            [scores] = checker.score(checker.inputs([r["query"]], [s.resume_text], [r]))
            counts["prefix_ok"] += all(x == 1.0 for x in scores)
            counts["changed"] += s.correction != s.request.wrong_step
        full = finish(problem_of(r), s.resume_text) if s is not None else None
        finished.append({**r, "response": full or r["response"]})
    graded, _ = verify_records(finished, workers=1, progress=False)
    counts["finished_ok"] = sum(bool(g["correct"]) and check_steps(problem_of(r), r["response"]).correct
                                for r, g in zip(finished, graded, strict=True))
    return {k: counts[k] / len(wrong) for k in ("exact", "early", "late", "missed", "prefix_ok", "changed", "finished_ok")}


def policy_salvage(base: str, n_problems: int, samples: int, temperature: float, max_new_tokens: int) -> dict:
    """The salvage loop without a trainer: the base model answers held-out problems; each failed answer is
    cut at the exact checker's first error, the teacher rewrites that step, and the same model continues
    from there on-policy; the continuation is graded by the RL reward's rule (``oxa verify`` with
    ``</think>`` required) and by the step checker."""
    from oxa.generation import TransformersBackend, generate_records
    from oxa.generation.sampling import SamplingParams, sample_seed
    from oxa.generation.types import Job
    from oxa.models import load_model, load_tokenizer
    from oxa.prm import CheckerPRM, TeacherCorrector, apply_corrections, locate_errors
    from oxa.prm.checker import problem_of
    from oxa.prompting import PromptFormat, prompt_text
    from oxa.synth.checker import check_steps
    from oxa.synth.world import benchmark_records
    from oxa.verify import verify_records

    tok, model = load_tokenizer(base, padding_side="left"), load_model(base)
    problems = benchmark_records(n_problems // 3 + 1)[:n_problems]
    sampled = generate_records(problems, model, tok, n=samples, temperature=temperature, top_p=1.0,
                               max_new_tokens=max_new_tokens, seed=0, progress=False)
    graded, _ = verify_records(sampled, workers=1, progress=False, require_think=True)
    failed = [r for r in graded if not r["correct"]]
    prm = CheckerPRM()
    requests = locate_errors(prm, prm.inputs([r["query"] for r in failed], [r["response"] for r in failed], failed))
    salvages = apply_corrections(TeacherCorrector(), requests, "\n")
    todo = [(r, s) for r, s in zip(failed, salvages, strict=True) if s is not None]
    # the policy continues after the kept prefix and the corrected step: the prompt is the chat prompt + that text
    texts = [prompt_text(tok, r["query"], PromptFormat()) + s.resume_text for r, s in todo]
    jobs = [Job(key=i, query=i, seed=sample_seed(1, str(i), 0)) for i in range(len(todo)) if not todo[i][1].done]
    params = SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens)
    tails = {}
    for batch in TransformersBackend(model, tok, batch_size=32).run(texts, jobs, params, PromptFormat(template=False, suffix="")):
        tails.update((job.key, out.text) for job, out in batch)
    final = [{**r, "response": s.resume_text + tails.get(i, "")} for i, (r, s) in enumerate(todo)]
    regraded, _ = verify_records(final, workers=1, progress=False, require_think=True)
    ok = [g["correct"] for g in regraded]
    all_steps = [check_steps(problem_of(r), r["response"]).correct for r in final]
    positions = [s.request.relative_position for _, s in todo]
    return {"problems": len(problems), "samples": len(sampled), "failed": len(failed),
            "located": sum(q is not None for q in requests), "corrected": len(todo),
            "salvaged": sum(ok), "salvaged_all_steps_right": sum(a and b for a, b in zip(ok, all_steps)),
            "share_of_failed_salvaged": sum(ok) / max(len(failed), 1),
            "first_error_relative_position_quartiles": _quartiles(positions)}


def _quartiles(values: list[float]) -> list[float]:
    import statistics

    return [round(q, 3) for q in statistics.quantiles(values, n=4)] if len(values) >= 2 else values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="synthetic base model directory (default: build or reuse the cached default)")
    ap.add_argument("--cache", help="cache directory for the base model")
    ap.add_argument("--trained", help="a separator-style PRM directory to measure instead of training one")
    ap.add_argument("--problems", type=int, default=600, help="training problems (x5 trajectories)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--bench", type=int, default=200, help="held-out problems measured (x5 trajectories)")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/prm-bench"))
    ap.add_argument("--policy-problems", type=int, default=0,
                    help="also run the salvage loop with the base model as policy on this many held-out problems")
    ap.add_argument("--policy-samples", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.85)
    ap.add_argument("--max-new-tokens", type=int, default=300)
    args = ap.parse_args()

    import torch

    from oxa.prm import CheckerPRM, PRMConfig, PRMTrainConfig, SeparatorPRM, load_prm, measure_on_planted, train_prm
    from oxa.prm.bench import planted_records
    from oxa.prm.tiny import build_tiny_separator_prm
    from oxa.synth.basemodel import BaseModelConfig, build_base_model

    base = args.base or str(build_base_model(BaseModelConfig(), cache=args.cache))
    bench = planted_records(args.bench, seed=1, held_out=True)
    results = {}

    t = time.time()
    checker = CheckerPRM()
    results["checker"] = measure_on_planted(checker, bench, threshold=args.threshold).as_dict()
    results["checker"]["salvage"] = salvage_shares(checker, bench, args.threshold)
    results["checker"]["seconds"] = time.time() - t

    from oxa.models import load_tokenizer

    model, tok = build_tiny_separator_prm(load_tokenizer(base), base=base, seed=0)
    untrained = SeparatorPRM(model.eval(), tok)
    results["untrained"] = measure_on_planted(untrained, bench, threshold=args.threshold).as_dict()

    t = time.time()
    out = args.trained or train_prm(PRMTrainConfig(base=base, output=args.out / "prm", synthetic_problems=args.problems,
                                                    epochs=args.epochs, learning_rate=args.lr, progress=False))
    train_seconds = time.time() - t
    t = time.time()
    trained = load_prm(PRMConfig(prm=str(out), device="cpu"))
    results["trained"] = measure_on_planted(trained, bench, threshold=args.threshold).as_dict()
    results["trained"]["salvage"] = salvage_shares(trained, bench, args.threshold)
    results["trained"]["train_seconds"] = train_seconds
    results["trained"]["seconds"] = time.time() - t
    if args.policy_problems:
        t = time.time()
        results["policy_salvage"] = policy_salvage(base, args.policy_problems, args.policy_samples, args.temperature,
                                                   args.max_new_tokens)
        results["policy_salvage"]["seconds"] = time.time() - t
    results["settings"] = {**vars(args), "out": str(args.out), "base": base, "threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    pct = lambda v: "-" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    print(f"held-out planted set: {args.bench} problems, {results['checker']['n_error']} wrong + "
          f"{results['checker']['n_correct']} right trajectories; threshold {args.threshold}")
    print(f"{'PRM':<28}{'error acc':>10}{'correct acc':>12}{'F1':>8}   first error exact per slip kind")
    trained_label = f"trained tiny PRM ({args.epochs:g} ep)" if not args.trained else "the given PRM"
    for name, label in (("checker", "exact checker"), ("trained", trained_label),
                        ("untrained", "same PRM, untrained head")):
        r = results[name]
        kinds = ", ".join(f"{k} {pct(g['error_acc'])}" for k, g in r["groups"].items() if g["error_acc"] is not None)
        print(f"{label:<28}{pct(r['error_acc']):>10}{pct(r['correct_acc']):>12}{pct(r['f1']):>8}   {kinds}")
    print("salvage of the wrong trajectories, teacher correcting (error located: exact / early / late / missed; "
          "prefix + correction all right; step changed; teacher-finished solution accepted):")
    for name in ("checker", "trained"):
        s = results[name]["salvage"]
        print(f"  {name:<8} " + ", ".join(f"{k} {pct(v)}" for k, v in s.items()))
    if args.policy_problems:
        p = results["policy_salvage"]
        print(f"policy salvage: the base model failed {p['failed']} of {p['samples']} samples; the checker located "
              f"{p['located']}, the teacher corrected {p['corrected']}, and continuing on-policy "
              f"{p['salvaged']} graded correct ({pct(p['share_of_failed_salvaged'])} of the failures; "
              f"{p['salvaged_all_steps_right']} with every step right); first error at relative position "
              f"quartiles {p['first_error_relative_position_quartiles']}")
    print(f"PRM training: {train_seconds:.0f} s; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
