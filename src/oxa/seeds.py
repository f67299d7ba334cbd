"""The demo under several seeds: one run directory per seed, one report of the spread and the paper's claims.

Each seed is a whole ``oxa demo`` run in ``OUT/seed-S`` (its own world, selections, fine-tuning and
sampling; the base model is shared, since its config does not depend on the seed). ``OUT/report.md``
compares every evaluated model of every seed with ``oxa report``: runs of one name across seeds are one
method, paired seed by seed, so the page opens with each method's mean ± spread and the four claims with
intervals from a bootstrap over seeds and problems (:mod:`oxa.evaluation.claims`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from oxa.errors import OxaError


def seed_dir(out: Path, seed: int) -> Path:
    return Path(out) / f"seed-{seed}"


def run_seeds(config, seeds: Sequence[int], *, log: Callable[[str], None] = print) -> Path:
    """Run (or reuse) the demo for each seed, then write the report over them; returns its path."""
    from oxa.demo import run_demo

    if len(set(seeds)) < len(seeds):
        raise OxaError(f"seeds repeat: {list(seeds)}")
    for seed in seeds:
        run_demo(config.model_copy(update={"seed": seed, "seeds": [], "out": seed_dir(config.out, seed)}),
                 log=lambda msg, s=seed: log(f"seed {s}: {msg}"))
    return report_seeds(config.out, seeds)


def model_name(stage: str) -> str:
    """The model an evaluation stage of the demo recipe evaluated: eval_sft -> sft, eval_rl_sft -> sft_rl."""
    name = stage.removeprefix("eval_")
    return name.removeprefix("rl_") + "_rl" if name.startswith("rl_") else name


def report_seeds(out: Path, seeds: Sequence[int]) -> Path:
    """``oxa report`` over every evaluation stage of every seed's run directory: ``eval_X`` is model X,
    ``eval_rl_X`` is X after GRPO (X_rl)."""
    from oxa.evaluation.claims import RL, ROLES, role
    from oxa.report import build_report

    runs: dict[str, list[Path]] = {}
    for seed in seeds:
        evals = sorted(p.parent for p in seed_dir(out, seed).glob("eval_*/results.json"))
        if not evals:
            raise OxaError(f"{seed_dir(out, seed)}: no evaluated models (eval_*/results.json)")
        for d in evals:
            runs.setdefault(model_name(d.name), []).append(d)
    def rank(name: str) -> tuple:  # base, sft_lp, sft, oxa_mle, oxa_full, the same after RL, then the rest
        key = role(name).removesuffix(RL)
        return (role(name).endswith(RL), ROLES.index(key) if key in ROLES else len(ROLES), name)

    runs = {name: runs[name] for name in sorted(runs, key=rank)}
    dirs = [d for group in runs.values() for d in group]
    names = [name for name, group in runs.items() for _ in group]
    title = "OXA demo over seeds " + ", ".join(map(str, seeds))
    return build_report(dirs, out, names=names, title=title)
