"""Grading throughput: ``oxa.verify.grade_many`` vs the naive process pool, same records, in one run.

    python benchmarks/verify.py [--problems 300] [--n 8] [--workers 2] [--repeats 3]

Records look like sampled evaluation output: ``--n`` responses per problem (gold answers from
MATH-500 and the paper's benchmarks), each a few KB of reasoning ending in ``\\boxed{}``; 60% give the
gold answer as written, the rest one of two wrong answers (integers for integer golds), so answers
repeat the way samples of one model do.

* naive: ``ProcessPoolExecutor.submit`` per record (the usual way to get a per-item deadline), the
  full response sent to the worker, which extracts and grades it;
* ours, no dedup: :class:`oxa.verify.GradingPool` on every record (extraction in the parent, chunks);
* ours: :func:`oxa.verify.grade_many` (adds grading each distinct (answer, gold) pair once, and
  deciding exact and integer matches without sympy).

Every repeat starts fresh worker processes (math-verify's parser gets faster as it warms, so all sides
start cold). Prints median records/s of each and the ratios; the verdicts must agree.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from oxa.data import load_benchmark
from oxa.verify import GradingPool, extract_answer, gold_answers, grade_answer, grade_many

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


def ours_no_dedup(responses, golds, workers: int, timeout: float) -> list[str]:
    tasks = [(extract_answer(r), gold_answers(g)) for r, g in zip(responses, golds)]
    with GradingPool(workers, timeout) as pool:
        return pool.grade(tasks)


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
    sides = {"naive (submit per record)": naive, "ours, no dedup (chunks)": ours_no_dedup, "ours (grade_many)": ours}
    times: dict[str, list[float]] = {k: [] for k in sides}
    verdicts = {}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            t = time.perf_counter()
            verdicts[name] = fn(responses, golds, args.workers, 30.0)
            times[name].append(time.perf_counter() - t)
    assert len({tuple(v) for v in verdicts.values()}) == 1, "the sides disagree"
    n = len(responses)
    distinct = len({(extract_answer(r), gold_answers(g)) for r, g in zip(responses, golds)})
    print(f"{n} records ({distinct} distinct answer/gold pairs), {args.workers} workers, median of {args.repeats}")
    base = statistics.median(times["naive (submit per record)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:28s} {n / med:8.0f} records/s  {med:6.2f} s  x{base / med:.2f} vs naive")


if __name__ == "__main__":
    main()
