"""The synthetic world's data splits, as ordinary record files every ``oxa`` command reads.

* ``teacher.jsonl``: several trajectories per query from different strategies (the teacher's data);
  a share carry one planted slip (wrong answer, known first error), as real teacher data holds some
  wrong answers for the verifier to filter.
* ``benchmark.jsonl``: held-out problems at every difficulty (``difficulty`` 1 easy, 2 medium, 3 hard);
  also registered as benchmarks ``synth``, ``synth-easy``, ``synth-medium``, ``synth-hard``.
* ``rl.jsonl``: prompts (with gold answers) for RLVR, distinct from the teacher's queries.
* ``world.json``: the settings, counts and the pre-training share of every strategy.

Records use the real data's fields (``id``, ``query`` without the prompt suffix, ``response``,
``answer`` as a string) plus ``family``, ``difficulty`` and ``problem`` (the structured problem the step
checker reads), and for trajectories ``query_id``, ``strategy``, ``pretrain_share`` and
``planted_error`` (the index of the first wrong step, or null). Held-out problems never occur in the
other splits or in the base model's corpus (:func:`oxa.synth.corpus.held_out`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import Field

from oxa.config import StageConfig
from oxa.io import write_json, write_records
from oxa.synth.corpus import PRETRAIN_MIX, held_out, pretrain_share, sample_problem
from oxa.synth.problems import DIFFICULTIES, FAMILIES, Problem, make_problem
from oxa.synth.teacher import corrupt, solve, strategies_for

BENCHMARK_SEED = 0  # the registered benchmarks are one fixed sample, whatever seed built the rest


class WorldConfig(StageConfig):
    """How much of the world to write."""

    seed: int = Field(0, description="seed of the world: its splits are deterministic for it (oxa demo: set by --seed)")
    n_queries: int = Field(400, ge=1, description="teacher queries")
    samples_per_query: int = Field(4, ge=1, description="teacher trajectories per query, distinct strategies first")
    teacher_error_rate: float = Field(0.1, ge=0.0, le=1.0, description="share of trajectories with a planted slip")
    benchmark_per_difficulty: int = Field(60, ge=0, description="held-out benchmark problems per difficulty")
    rl_prompts: int = Field(200, ge=0, description="RLVR prompts")


def teacher_records(problem: Problem, k: int, rng: random.Random, error_rate: float,
                    mix: dict[str, dict[str, float]] = PRETRAIN_MIX) -> list[dict[str, Any]]:
    """``k`` trajectories for ``problem``: every applicable strategy once (in random order) before repeats."""
    names = strategies_for(problem)
    rng.shuffle(names)
    out = []
    for j in range(k):
        strategy = names[j % len(names)]
        wrong = rng.random() < error_rate
        traj = corrupt(problem, strategy, rng) if wrong else solve(problem, strategy)
        out.append({**problem.to_record(), "id": f"{problem.id}-{j}", "query_id": problem.id,
                    "response": traj.response, "strategy": strategy,
                    "pretrain_share": pretrain_share(problem.family, strategy, mix),
                    "planted_error": traj.first_error})
    return out


def benchmark_records(per_difficulty: int, seed: int = BENCHMARK_SEED,
                      difficulties: tuple[int, ...] = tuple(DIFFICULTIES)) -> list[dict[str, Any]]:
    """Distinct held-out problems, families in turn, ``per_difficulty`` at each difficulty."""
    rng, out, seen = random.Random(f"benchmark-{seed}"), [], set()
    for d in difficulties:
        made, tries = 0, 0
        while made < per_difficulty and tries < 200 * per_difficulty:
            tries += 1
            p = make_problem(rng, FAMILIES[made % len(FAMILIES)], d, f"synth-{DIFFICULTIES[d]}-{made:04d}")
            if p.query in seen or not held_out(p.query):
                continue
            seen.add(p.query)
            out.append(p.to_record())
            made += 1
    return out


def build_world(config: WorldConfig) -> dict[str, list[dict[str, Any]]]:
    """The splits of the world for ``config`` (deterministic for its seed)."""
    rng = random.Random(f"world-{config.seed}")
    queries, seen = [], set()
    while len(queries) < config.n_queries + config.rl_prompts:
        p = sample_problem(rng, len(queries), prefix="q", held=False)
        if p.query not in seen:
            seen.add(p.query)
            queries.append(p)
    teacher_problems, rl_problems = queries[: config.n_queries], queries[config.n_queries:]
    teacher = [r for p in teacher_problems
               for r in teacher_records(p, config.samples_per_query, rng, config.teacher_error_rate)]
    rl = [{**p.to_record(), "id": p.id.replace("q-", "rl-")} for p in rl_problems]
    return {"teacher": teacher, "benchmark": benchmark_records(config.benchmark_per_difficulty, config.seed),
            "rl": rl}


def write_world(config: WorldConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write the splits (atomically, one JSONL file each) and ``world.json``; return the summary."""
    out_dir = Path(out_dir)
    splits = build_world(config)
    counts = {name: write_records(out_dir / f"{name}.jsonl", records) for name, records in splits.items()}
    teacher = splits["teacher"]
    summary = {
        "config": config.model_dump(),
        "files": {name: f"{name}.jsonl" for name in splits},
        "counts": counts,
        "teacher_planted_errors": sum(r["planted_error"] is not None for r in teacher),
        "benchmark_by_difficulty": {DIFFICULTIES[d]: sum(r["difficulty"] == d for r in splits["benchmark"])
                                    for d in DIFFICULTIES},
        "pretrain_mix": PRETRAIN_MIX,
    }
    write_json(out_dir / "world.json", summary)
    return summary


def register_benchmarks(per_difficulty: int = 60) -> None:
    """Register ``synth`` (all difficulties) and ``synth-easy|medium|hard`` with :mod:`oxa.data`."""
    from oxa.data import register_benchmark

    register_benchmark("synth", lambda data_dir: benchmark_records(per_difficulty))
    for d, name in DIFFICULTIES.items():
        register_benchmark(f"synth-{name}", lambda data_dir, d=d: benchmark_records(per_difficulty, difficulties=(d,)))
