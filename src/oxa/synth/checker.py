"""A rule-based process reward model for the synthetic world: which step is wrong, and the first one.

A response's reasoning (inside ``<think>``, or the whole text when there is none) is read line by
line. A line is a *step* when it holds arithmetic: after an optional prose label ending in ``:``, it
is split at ``=``; segments that name a variable (``3x``, ``x + 4``) are skipped, every other segment
must be an integer expression (``+ - * /``, ``mod``, brackets). A step is right when

1. all its numeric segments evaluate to the same number (exact integer arithmetic; a division must
   come out even), and
2. that number is *on track*: one a correct solution strategy of this problem computes
   (:func:`oxa.synth.teacher.reference_values`), so a step that is arithmetically true but built on a
   misread operand, a wrong operation or an earlier wrong value is caught too.

After the steps, the boxed answer must equal the gold answer; when every step is right but the answer
is not, the first error is the answer itself (index ``len(per_step)``). Lines without arithmetic are
prose and are not judged. The rule's blind spot: a wrong step whose value coincides with an on-track
value passes.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from oxa.synth.problems import Problem, apply
from oxa.synth.teacher import reference_values

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "mod"}
_VARIABLE = re.compile(r"[A-Za-z]")
BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


class StepError(ValueError):
    pass


def evaluate(expr: str) -> int:
    """The value of an integer expression with ``+ - * /`` and ``mod``; a StepError if it is not one."""
    source = re.sub(r"\bmod\b", "%", expr).replace("×", "*").replace("−", "-")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        raise StepError(f"cannot read {expr.strip()!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _eval(node.left), _eval(node.right)
        try:
            return apply(a, _OPS[type(node.op)], b)
        except (ValueError, ZeroDivisionError) as e:
            raise StepError(str(e)) from None
    raise StepError(f"not integer arithmetic: {ast.unparse(node)!r}")


@dataclass(frozen=True)
class StepCheck:
    line: str
    ok: bool
    value: int | None  # the step's result (its last numeric segment), None if unreadable
    reason: str | None = None  # why it is wrong: "arithmetic", "off track" or "unreadable: ..."


@dataclass(frozen=True)
class StepReport:
    steps: tuple[StepCheck, ...]
    answer: int | None  # the boxed answer, None if missing
    answer_ok: bool
    first_error: int | None  # index into steps; len(steps) means the answer; None when all is right

    @property
    def per_step(self) -> list[bool]:
        return [s.ok for s in self.steps]

    @property
    def correct(self) -> bool:
        return self.first_error is None


def reasoning_lines(response: str) -> list[str]:
    """The lines of the reasoning: inside ``<think>...</think>`` when present."""
    text = response
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[0]
        text = text.split("<think>", 1)[1] if "<think>" in text else text
    return [line.strip() for line in text.splitlines() if line.strip()]


def numeric_segments(line: str) -> list[str]:
    """The ``=``-separated parts of a line's arithmetic that name no variable (after a prose label)."""
    math = line.rsplit(":", 1)[-1]
    segments = [s.strip().rstrip(".,;✓ ").strip() for s in math.split("=")]
    if len(segments) == 1 and not re.fullmatch(r"[\d\s+\-*/()mod×−]+", segments[0] or "x"):
        return []  # a sentence, not a computation
    return [s for s in segments if s and not _VARIABLE.search(re.sub(r"\bmod\b", "", s))]


def check_line(line: str, on_track: frozenset[int]) -> StepCheck | None:
    """The verdict on one line, or None when the line is prose."""
    segments = numeric_segments(line)
    if not segments:
        return None
    try:
        values = [evaluate(s) for s in segments]
    except StepError as e:
        return StepCheck(line, False, None, f"unreadable: {e}")
    if len(set(values)) > 1:
        return StepCheck(line, False, values[-1], "arithmetic")
    if values[-1] not in on_track:
        return StepCheck(line, False, values[-1], "off track")
    return StepCheck(line, True, values[-1])


def check_steps(problem: Problem | dict, response: str) -> StepReport:
    """Judge every step of ``response`` to ``problem`` (a Problem or a synthetic record) and the answer."""
    if isinstance(problem, dict):
        problem = Problem.from_record(problem)
    on_track = reference_values(problem)
    steps = tuple(c for c in (check_line(line, on_track) for line in reasoning_lines(response)) if c is not None)
    tail = response.rsplit("</think>", 1)[-1]
    boxed = BOXED.findall(tail)
    answer = int(boxed[-1]) if boxed else None
    answer_ok = answer == problem.answer
    first = next((i for i, s in enumerate(steps) if not s.ok), None)
    if first is None and not answer_ok:
        first = len(steps)
    return StepReport(steps, answer, answer_ok, first)
