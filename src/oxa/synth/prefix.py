"""The teacher continuing a partial solution: what a verified prefix can be the start of, and what comes next.

A prefix (reasoning lines so far) is *consistent* with a strategy when the strategy's correct solution
starts with exactly those lines; failing that (a solver may word its lines its own way), when the
values of its arithmetic lines are the first values the strategy computes. The teacher's next step is
that solution's next line, and it can finish the solution from there. When several strategies fit, the
first in :func:`oxa.synth.teacher.strategies_for` order is taken, so corrections are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from oxa.synth.checker import check_line
from oxa.synth.problems import Problem
from oxa.synth.teacher import Trajectory, answer_line, reference_values, solve, strategies_for


def consistent_solutions(problem: Problem, lines: Sequence[str]) -> list[tuple[Trajectory, int]]:
    """Each correct solution ``lines`` can be the start of, with the index of its line that comes next."""
    lines = [line.strip() for line in lines if line.strip()]
    solutions = [solve(problem, s) for s in strategies_for(problem)]
    exact = [(t, len(lines)) for t in solutions if list(t.lines[: len(lines)]) == lines]
    if exact:
        return exact
    on_track = reference_values(problem)
    values = [c.value for c in (check_line(line, on_track) for line in lines) if c is not None]
    return [(t, t.step_lines[len(values) - 1] + 1 if values else 0) for t in solutions
            if len(t.steps) >= len(values) and list(t.steps[: len(values)]) == values]


def next_line(problem: Problem, lines: Sequence[str]) -> str | None:
    """The teacher's next reasoning line after ``lines``; None when a consistent solution has no more lines
    (the reasoning is complete) or no solution is consistent with them."""
    found = consistent_solutions(problem, lines)
    if not found:
        return None
    solution, i = found[0]
    return solution.lines[i] if i < len(solution.lines) else None


def finish(problem: Problem, partial: str) -> str | None:
    """``partial`` - a response cut after a whole reasoning line (or after its answer) - finished by the teacher.

    The rest of the first consistent solution's lines, ``</think>`` and the answer line; ``partial``
    itself when it already has its answer; None when no solution is consistent with its lines.
    """
    if "</think>" in partial:
        return partial
    body = partial.split("<think>", 1)[1] if "<think>" in partial else partial
    found = consistent_solutions(problem, body.splitlines())
    if not found:
        return None
    solution, i = found[0]
    text = partial if partial.endswith("\n") or not partial else partial + "\n"
    return text + "".join(line + "\n" for line in solution.lines[i:]) + "</think>\n" + answer_line(problem.answer)
