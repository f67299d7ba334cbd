"""Grading throughput: `oxa verify` against the ideal of ``--workers`` processes running math-verify, one run.

    python benchmarks/verify.py [--problems 300] [--n 8] [--workers 2] [--repeats 3]

Records look like sampled evaluation output: ``--n`` responses per problem (gold answers from
MATH-500 and the paper's benchmarks), each a few KB of reasoning ending in ``\\boxed{}``; 60% give the
gold answer as written, the rest one of two wrong answers (integers for integer golds), so answers
repeat the way samples of one model do.

* ideal: one process runs plain math-verify (``parse`` both sides, ``verify``) on each distinct
  (extracted answer, gold) pair once, answers already extracted; its time divided by ``--workers`` is
  the time a perfect ``--workers``-process split would take. Goal: ours >= 0.8x its records/s.
* ours: :func:`oxa.verify.grade_many` (what ``oxa verify`` runs) from the raw responses: extraction,
  distinct pairs, exact and integer matches without sympy, math-verify with a deadline in a pool of
  ``--workers`` processes;
* naive: ``ProcessPoolExecutor.submit`` per record (the usual way to get a per-item deadline), the
  full response sent to the worker, which extracts and grades it.

Every repeat starts fresh processes, forked from a parent that has imported math-verify (its parser
gets faster as it warms, so all sides start alike). Prints median records/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from oxa.data import load_benchmark
from oxa.verify import extract_answer, gold_answers, grade_answer, grade_many

FILLER = "Let me consider the cases carefully and check each step. " * 60


def records(problems: int, n: int, seed: int = 0) -> tuple[list[str], list]:
    golds = []
    for name in ("math500", "aime24", "aime25", "hmmt25", "cmimc25", "brumo25", "minerva"):
        golds += [row["answer"] for row in load_benchmark(name)]
    rng = random.Random(seed)
    golds = rng.sample(golds, min(problems, len(golds)))
    responses, out_golds = [], []
    for gold in golds:
        first = gold[0].strip() if isinstance(gold, list) else gold
        wrong = [str(int(first) + 1), str(int(first) * 2)] if first.isdigit() else [f"{first}+1", f"2({first})"]
        for _ in range(n):
            answer = first if rng.random() < 0.6 else rng.choice(wrong)
            responses.append(f"<think>\n{FILLER}\\boxed{{0}}\n</think>\nSo the answer is $\\boxed{{{answer}}}$.")
            out_golds.append(gold)
    return responses, out_golds


def _naive_one(response: str, gold) -> str:
    return grade_answer(extract_answer(response), gold_answers(gold))


def naive(responses, golds, workers: int, timeout: float) -> list[str]:
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(_naive_one, r, g) for r, g in zip(responses, golds)]
        return [f.result(timeout=timeout) for f in futures]


def _math_verify_seconds(pairs: list[tuple[str, tuple[str, ...]]]) -> float:
    from math_verify import parse, verify

    start = time.perf_counter()
    for answer, golds in pairs:
        gold = [x for g in golds for x in parse("\\boxed{" + g + "}", parsing_timeout=None)]
        verify(gold, parse("\\boxed{" + answer + "}", parsing_timeout=None), timeout_seconds=None)
    return time.perf_counter() - start


def ideal(responses, golds, workers: int, timeout: float) -> float:
    """Seconds ``workers`` processes would take, splitting one fresh process's math-verify time evenly."""
    pairs = list(dict.fromkeys((a, gold_answers(g)) for r, g in zip(responses, golds) if (a := extract_answer(r))))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        return pool.submit(_math_verify_seconds, pairs).result() / workers


def ours(responses, golds, workers: int, timeout: float) -> list[str]:
    return [v.status for v in grade_many(responses, golds, workers=workers, timeout=timeout, progress=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    responses, golds = records(args.problems, args.n)
    grade_answer("0", ("0",))  # import and set up math-verify once in the parent, for every side alike
    sides = {"naive (submit per record)": naive, "ours (oxa verify)": ours}
    times: dict[str, list[float]] = {"ideal (workers x math-verify)": [], **{k: [] for k in sides}}
    verdicts = {}
    for _ in range(args.repeats):
        times["ideal (workers x math-verify)"].append(ideal(responses, golds, args.workers, 30.0))
        for name, fn in sides.items():
            t = time.perf_counter()
            verdicts[name] = fn(responses, golds, args.workers, 30.0)
            times[name].append(time.perf_counter() - t)
    assert len({tuple(v) for v in verdicts.values()}) == 1, "the sides disagree"
    n = len(responses)
    distinct = len({(extract_answer(r), gold_answers(g)) for r, g in zip(responses, golds)})
    print(f"{n} records ({distinct} distinct answer/gold pairs), {args.workers} workers, median of {args.repeats}")
    rate = {name: n / statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"  {name:30s} {rate[name]:8.0f} records/s  {statistics.median(ts):6.2f} s")
    ours_rate = rate["ours (oxa verify)"]
    print(f"  ours / ideal = {ours_rate / rate['ideal (workers x math-verify)']:.2f}x, "
          f"ours / naive = {ours_rate / rate['naive (submit per record)']:.2f}x")

if __name__ == "__main__":
    main()
