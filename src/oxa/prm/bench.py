"""How far to trust a PRM: ProcessBench-style accuracy on trajectories whose first error is known.

ProcessBench (Zheng et al. 2024) labels each solution with the index of its first wrong step, or -1
when every step is right, and scores a critic by

* ``error_acc``: on wrong solutions, the share where the predicted first error is exactly the label;
* ``correct_acc``: on right solutions, the share where no error is flagged;
* ``f1``: their harmonic mean, ``2 * error_acc * correct_acc / (error_acc + correct_acc)``.

:func:`planted_records` makes such a set from the synthetic world: for each problem one right
trajectory and one per slip kind (wrong result, misread operand, wrong operation, mis-copied answer),
labelled from where the teacher planted the slip - independently of any checker. The label is a step
index under the synthetic split (one step per reasoning line, then the answer step). By default the
problems come from the held-out part of the world, which PRM training data (:func:`stepwise_records`
on ``held_out=False`` problems) never contains.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from oxa.prm.base import PRM, judge
from oxa.prm.checker import SYNTH_SPLIT
from oxa.prm.steps import split_steps
from oxa.synth.corpus import sample_problem
from oxa.synth.teacher import ERROR_KINDS, Trajectory, corrupt, solve, strategies_for

NO_ERROR = -1  # ProcessBench's label for a solution with no wrong step


@dataclass(frozen=True)
class BenchReport:
    n_error: int  # wrong solutions (label >= 0)
    n_correct: int  # right solutions (label -1)
    error_acc: float | None  # first error found exactly, on wrong solutions
    correct_acc: float | None  # no error flagged, on right solutions
    f1: float | None  # harmonic mean of the two
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # the same per group (e.g. slip kind)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        return (f"ProcessBench-style: first error exact on {pct(self.error_acc)} of {self.n_error} wrong, "
                f"no error flagged on {pct(self.correct_acc)} of {self.n_correct} right, F1 {pct(self.f1)}")


def _accuracies(predicted: Sequence[int], labels: Sequence[int]) -> tuple[int, int, float | None, float | None, float | None]:
    wrong = [p == y for p, y in zip(predicted, labels) if y != NO_ERROR]
    right = [p == NO_ERROR for p, y in zip(predicted, labels) if y == NO_ERROR]
    err = sum(wrong) / len(wrong) if wrong else None
    cor = sum(right) / len(right) if right else None
    f1 = None
    if err is not None and cor is not None:
        f1 = 2 * err * cor / (err + cor) if err + cor > 0 else 0.0
    return len(wrong), len(right), err, cor, f1


def processbench_report(predicted: Sequence[int], labels: Sequence[int], groups: Sequence[str] | None = None) -> BenchReport:
    """Accuracies of ``predicted`` first errors against ``labels`` (both -1 for none), overall and per group."""
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    per: dict[str, dict[str, Any]] = {}
    if groups is not None:
        members: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            members[str(g)].append(i)
        for g, idx in sorted(members.items()):
            n_e, n_c, e, c, f = _accuracies([predicted[i] for i in idx], [labels[i] for i in idx])
            per[g] = {"n_error": n_e, "n_correct": n_c, "error_acc": e, "correct_acc": c, "f1": f}
    return BenchReport(*_accuracies(predicted, labels), groups=per)


def label_of(trajectory: Trajectory) -> int:
    """The synthetic-split step index of a trajectory's first error (-1 if none).

    Steps are the reasoning lines, then the answer; the teacher records which lines hold computations
    (``step_lines``) and which computation it made wrong (``first_error``).
    """
    fe = trajectory.first_error
    if fe is None:
        return NO_ERROR
    return trajectory.step_lines[fe] if fe < len(trajectory.steps) else len(trajectory.lines)


def planted_records(n_problems: int, *, seed: int = 0, held_out: bool = True,
                    kinds: Sequence[str] = ERROR_KINDS) -> list[dict[str, Any]]:
    """Per problem, one right trajectory and one wrong one per slip kind, each labelled with its first error.

    Records have the synthetic world's fields plus ``response``, ``strategy``, ``error_kind`` ("none"
    for a right one) and ``label`` (first wrong step, -1 if none).
    """
    rng = random.Random(f"prm-bench-{seed}-{held_out}")
    out = []
    for i in range(n_problems):
        problem = sample_problem(rng, i, prefix="steps" if held_out else "prm-train", held=held_out)
        base = problem.to_record()
        for kind in ("none", *kinds):
            strategy = rng.choice(strategies_for(problem))
            traj = solve(problem, strategy) if kind == "none" else corrupt(problem, strategy, rng, kind=kind)
            out.append({**base, "id": f"{problem.id}-{kind}", "query_id": problem.id, "response": traj.response,
                        "strategy": strategy, "error_kind": kind, "label": label_of(traj)})
    return out


def stepwise_records(records: Sequence[Mapping[str, Any]], *, label_field: str = "label",
                     after_error: str = "drop") -> list[dict[str, Any]]:
    """Records with a first-error label as TRL's stepwise-supervision format.

    ``{"prompt", "completions": [step, ...], "labels": [bool, ...]}``: steps before the first error are
    right, the first error is wrong. The steps after it are built on a wrong value, so whether each is
    "right" is ill-defined: ``after_error="drop"`` (default) leaves them out; ``"wrong"`` labels them
    wrong, which teaches a PRM that late steps - the answer step above all, wrong in every wrong
    trajectory - are wrong, and it then flags right solutions too.
    """
    if after_error not in ("drop", "wrong"):
        raise ValueError(f"after_error must be 'drop' or 'wrong', got {after_error!r}")
    out = []
    for r in records:
        steps = split_steps(r["response"], SYNTH_SPLIT).texts
        first = r[label_field] if r[label_field] != NO_ERROR else len(steps)
        if after_error == "drop":
            steps = steps[: first + 1]
        out.append({"prompt": r["query"], "completions": steps, "labels": [k < first for k in range(len(steps))]})
    return out


def measure_on_planted(prm: PRM, records: Sequence[Mapping[str, Any]], *, threshold: float = 0.5,
                       batch_size: int = 64) -> BenchReport:
    """Score :func:`planted_records` with ``prm`` and report ProcessBench-style accuracies, per slip kind.

    The responses are cut with the synthetic split (the labels' step indices are defined under it),
    whatever the PRM's own default separator.
    """
    predicted = []
    for s in range(0, len(records), batch_size):
        chunk = records[s : s + batch_size]
        items = prm.inputs([r["query"] for r in chunk], [r["response"] for r in chunk], chunk, split=SYNTH_SPLIT)
        predicted += [NO_ERROR if j.first_error is None else j.first_error for j in judge(prm, items, threshold)]
    return processbench_report(predicted, [int(r["label"]) for r in records], [r["error_kind"] for r in records])
