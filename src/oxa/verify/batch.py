"""Grading many responses fast: extraction happens in the parent (only short answer strings cross
process boundaries); identical (answer, gold) pairs are graded once (with n samples per query most
answers repeat); an answer written exactly as its gold, or an integer against integer golds, is decided
without sympy (:func:`quick_status`); the rest goes to the pool's workers in chunks, one message per
chunk, not per item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from oxa.verify.extract import Gold, extract_answer, gold_answers
from oxa.verify.grade import Status, Task, Verdict, quick_status
from oxa.verify.pool import GradingPool


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(k)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not enabled)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda k: bar.advance(task, k)


def grade_distinct(pool: GradingPool, tasks: Sequence[Task],
                   on_done: Callable[[int], None] | None = None) -> list[Verdict]:
    """Grade each distinct (answer, golds) pair once: without an answer ``unparsable``, by
    :func:`quick_status` where it knows, else by math-verify in the pool."""
    status: dict[Task, Status] = {}
    for k in dict.fromkeys(k for k in tasks if k[0] is not None):
        if (quick := quick_status(*k)) is not None:
            status[k] = quick
    todo = [k for k in dict.fromkeys(tasks) if k[0] is not None and k not in status]
    if on_done:
        on_done(len(status))
    status.update(zip(todo, pool.grade(todo, on_done)))
    return [Verdict(status[k] if k[0] is not None else "unparsable", k[0]) for k in tasks]


def grade_tasks(tasks: Sequence[Task], workers: int, timeout: float,
                progress: bool) -> tuple[list[Verdict], int, int]:
    """Verdicts of ``tasks`` from a fresh pool, with the number of distinct pairs and of workers killed."""
    n_distinct = len({t for t in tasks if t[0] is not None})
    with GradingPool(workers, timeout) as pool, progress_bar(n_distinct, "verify", progress) as advance:
        verdicts = grade_distinct(pool, tasks, advance)
    return verdicts, n_distinct, pool.killed


def grade_many(responses: Sequence[str], golds: Sequence[Gold], *, workers: int = 2, timeout: float = 5.0,
               progress: bool = True, require_think: bool = False) -> list[Verdict]:
    """Grade ``responses[i]`` against ``golds[i]`` (a string, number, or list where any may match).

    Runs in ``workers`` processes; an item that takes longer than ``timeout`` seconds is ``timeout``.
    Raises ValueError for a malformed gold (see :func:`gold_answers`).
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    gold_keys = [gold_answers(g) for g in golds]
    tasks = [(extract_answer(r, require_think=require_think), g) for r, g in zip(responses, gold_keys)]
    return grade_tasks(tasks, workers, timeout, progress)[0]
