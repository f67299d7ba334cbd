"""The teacher: several genuinely different correct solution strategies per family, and controlled slips.

A strategy writes its reasoning on a :class:`Scratchpad`, one step per line; every computation goes
through :meth:`Scratchpad.op`, so a :class:`Slip` planted at one computation makes exactly that step
wrong while every later step stays arithmetically consistent with the wrong value - a plausible wrong
trajectory whose first error is known. Strategies differ in order (products first vs. a running
total), decomposition (reduce modulo m first vs. at the end; expand a bracket vs. divide first),
granularity (one operation per line vs. one expression rewritten) and checks (substituting back), so
the base model, pre-trained on a skewed mix of them, finds some familiar and others not.

Responses use the real data's format: ``<think>`` one step per line ``</think>`` then ``\\boxed{answer}``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from oxa.synth.problems import CHAIN_WORDS, Problem, apply

ERROR_KINDS = ("arith", "operand", "operation", "answer")
SWAPPED_OP = {"+": "-", "-": "+", "*": "+", "/": "*"}


@dataclass
class Slip:
    """Make computation number ``at`` wrong: a wrong result (arith), a misread operand, or the wrong operation."""

    at: int
    kind: str
    rng: random.Random

    def make(self, a: int, op: str, b: int, value: int, avoid: frozenset[int]) -> tuple[str, int]:
        candidates: list[tuple[str, int]] = []
        if self.kind == "operand":
            for b2 in (b + 1, b - 1, b + 2, b - 2):
                if b2 > 0 and b2 != b and not (op in ("/", "mod") and (b2 < 2 or (op == "/" and a % b2))):
                    candidates.append((f"{a} {op} {b2}", apply(a, op, b2)))
        elif self.kind == "operation" and op in SWAPPED_OP:
            candidates.append((f"{a} {SWAPPED_OP[op]} {b}", apply(a, SWAPPED_OP[op], b)))
        self.rng.shuffle(candidates)
        deltas = [1, -1, 2, -2, 10, -10, 3, -3]
        self.rng.shuffle(deltas)
        # an arithmetic slip (the written result is wrong) is always possible, and the fallback of the others
        candidates += [(f"{a} {op} {b}", value + d) for d in deltas] + [(f"{a} {op} {b}", value + 97)]
        return next((t, v) for t, v in candidates if v != value and v not in avoid)


@dataclass
class Scratchpad:
    """Lines of a solution: ``step`` lines hold computations, ``say`` lines are prose."""

    slip: Slip | None = None
    avoid: frozenset[int] = frozenset()
    lines: list[str] = field(default_factory=list)
    values: list[int] = field(default_factory=list)  # the result of each step line
    step_lines: list[int] = field(default_factory=list)  # the index in ``lines`` of each step line
    n_ops: int = 0
    first_error: int | None = None  # index (among step lines) of the line holding the slipped computation
    _pending: bool = False

    def op(self, a: int, op: str, b: int) -> tuple[str, int]:
        """``a op b`` as text and its value; at the slip's computation one of them is wrong."""
        i, self.n_ops = self.n_ops, self.n_ops + 1
        try:
            value = apply(a, op, b)
        except ValueError:
            if self.first_error is None and not self._pending:
                raise
            value = a // b  # an inexact division downstream of a slip: written rounded, as a student would
        if self.slip is not None and self.slip.at == i:
            self._pending = True
            return self.slip.make(a, op, b, value, self.avoid)
        return f"{a} {op} {b}", value

    def step(self, text: str, value: int) -> None:
        if self._pending:
            self.first_error, self._pending = len(self.values), False
        self.step_lines.append(len(self.lines))
        self.lines.append(text)
        self.values.append(value)

    def say(self, text: str) -> None:
        self.lines.append(text)


# ---------------------------------------------------------------- chain
CHAIN_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}


def chain_stepwise(p: dict, pad: Scratchpad) -> int:
    v = p["start"]
    for op, x in p["ops"]:
        t, v = pad.op(v, op, x)
        pad.step(f"{t} = {v}", v)
    return v


def chain_labelled(p: dict, pad: Scratchpad) -> int:
    v = p["start"]
    pad.say(f"We begin with {v} and apply the operations in order.")
    for i, (op, x) in enumerate(p["ops"], start=1):
        t, v = pad.op(v, op, x)
        pad.step(f"Step {i}, {CHAIN_WORDS[op].format(x=x)}: {t} = {v}", v)
    return v


def _render(v: int, ops: list) -> str:
    """``v`` followed by ``ops`` as one expression with the fewest brackets (left to right)."""
    text, prec = str(v), 3
    for op, x in ops:
        p = 1 if op in "+-" else 2
        if prec < p:
            text = f"({text})"
        text, prec = f"{text} {op} {x}", p
    return text


def _value(v: int, ops: list) -> int:
    for op, x in ops:
        v = apply(v, op, x) if not (op == "/" and v % x) else v // x
    return v


def chain_nested(p: dict, pad: Scratchpad) -> int:
    pad.say("Write the whole computation as one expression and simplify it from the inside out.")
    v, ops = p["start"], p["ops"]
    for i, (op, x) in enumerate(ops):
        before = _render(v, ops[i:])
        _, v = pad.op(v, op, x)
        pad.step(f"{before} = {_render(v, ops[i + 1:])}", _value(v, ops[i + 1:]))
    return v


def chain_checked(p: dict, pad: Scratchpad) -> int:
    result = chain_stepwise(p, pad)
    pad.say("Check by undoing each operation, last one first:")
    v = result
    for op, x in reversed(p["ops"]):
        t, v = pad.op(v, CHAIN_INVERSE[op], x)
        pad.step(f"{t} = {v}", v)
    pad.say("This leads back to the starting number, so the result holds.")
    return result


# ---------------------------------------------------------------- word
def _amounts(p: dict, pad: Scratchpad) -> list[int]:
    amounts = []
    for _, count, size in p["events"]:
        if size > 1:
            t, amount = pad.op(count, "*", size)
            pad.step(f"{count} packs of {size}: {t} = {amount}", amount)
        else:
            amount = count
        amounts.append(amount)
    return amounts


def word_running(p: dict, pad: Scratchpad) -> int:
    v = p["start"]
    for sign, count, size in p["events"]:
        amount = count
        if size > 1:
            t, amount = pad.op(count, "*", size)
            pad.step(f"{t} = {amount}", amount)
        t, v = pad.op(v, "+" if sign > 0 else "-", amount)
        pad.step(f"{t} = {v}", v)
    return v


def word_products_first(p: dict, pad: Scratchpad) -> int:
    pad.say(f"First count the {p['item']} in each pack purchase or gift.")
    amounts = _amounts(p, pad)
    pad.say("Now follow the total through the story.")
    v = p["start"]
    for (sign, _, _), amount in zip(p["events"], amounts):
        t, v = pad.op(v, "+" if sign > 0 else "-", amount)
        pad.step(f"{t} = {v}", v)
    return v


def word_gains_losses(p: dict, pad: Scratchpad) -> int:
    amounts = _amounts(p, pad)
    gains = [a for (s, _, _), a in zip(p["events"], amounts) if s > 0]
    losses = [a for (s, _, _), a in zip(p["events"], amounts) if s < 0]
    pad.say(f"All the {p['item']} that came in: the start plus each purchase.")
    have = p["start"]
    for a in gains:
        t, have = pad.op(have, "+", a)
        pad.step(f"{t} = {have}", have)
    if not losses:
        return have
    pad.say("Everything given away:")
    lost = losses[0]
    for a in losses[1:]:
        t, lost = pad.op(lost, "+", a)
        pad.step(f"{t} = {lost}", lost)
    t, left = pad.op(have, "-", lost)
    pad.step(f"Left: {t} = {left}", left)
    return left


# ---------------------------------------------------------------- linear
def _isolate(p: dict, pad: Scratchpad, undo: bool) -> int:
    a, b, c, form = p["a"], p["b"], p["c"], p["form"]
    if form == "a(x+b)":
        t, r = pad.op(c, "/", a)
        pad.step(f"Undo the multiplication by {a}: {t} = {r}" if undo else f"x + {b} = {t} = {r}", r)
        t, x = pad.op(r, "-", b)
        pad.step(f"Undo the + {b}: {t} = {x}" if undo else f"x = {t} = {x}", x)
        return x
    op, verb = ("-", f"+ {b}") if form == "ax+b" else ("+", f"- {b}")
    t, r = pad.op(c, op, b)
    pad.step(f"Undo the {verb}: {t} = {r}" if undo else f"{a}x = {t} = {r}", r)
    t, x = pad.op(r, "/", a)
    pad.step(f"Undo the multiplication by {a}: {t} = {x}" if undo else f"x = {t} = {x}", x)
    return x


def linear_isolate(p: dict, pad: Scratchpad) -> int:
    return _isolate(p, pad, undo=False)


def linear_undo(p: dict, pad: Scratchpad) -> int:
    pad.say("Undo the operations on x in reverse order.")
    return _isolate(p, pad, undo=True)


def linear_checked(p: dict, pad: Scratchpad) -> int:
    x = _isolate(p, pad, undo=False)
    a, b = p["a"], p["b"]
    pad.say("Check by substituting x back into the equation:")
    if p["form"] == "a(x+b)":
        t1, s = pad.op(x, "+", b)
        t2, v = pad.op(a, "*", s)
        pad.step(f"{a} * ({t1}) = {t2} = {v}", v)
    else:
        t1, ax = pad.op(a, "*", x)
        t2, v = pad.op(ax, "+" if p["form"] == "ax+b" else "-", b)
        pad.step(f"{t1} {'+' if p['form'] == 'ax+b' else '-'} {b} = {t2} = {v}", v)
    return x


def linear_expand(p: dict, pad: Scratchpad) -> int:
    a, b, c = p["a"], p["b"], p["c"]
    t, ab = pad.op(a, "*", b)
    pad.step(f"Expand the bracket, {a} times {b}: {t} = {ab}", ab)
    pad.say(f"So {a}x + {ab} equals {c}.")
    t, r = pad.op(c, "-", ab)
    pad.step(f"{a}x = {t} = {r}", r)
    t, x = pad.op(r, "/", a)
    pad.step(f"x = {t} = {x}", x)
    return x


# ---------------------------------------------------------------- modular
def _full_value(p: dict, pad: Scratchpad) -> int:
    total = None
    for q1, q2 in p["terms"]:
        t, prod = pad.op(q1, "*", q2)
        pad.step(f"{t} = {prod}", prod)
        if total is None:
            total = prod
        else:
            t, total = pad.op(total, "+", prod)
            pad.step(f"{t} = {total}", total)
    if p["add"]:
        t, total = pad.op(total, "+", p["add"])
        pad.step(f"{t} = {total}", total)
    return total


def modular_direct(p: dict, pad: Scratchpad) -> int:
    total = _full_value(p, pad)
    t, r = pad.op(total, "mod", p["m"])
    pad.step(f"{t} = {r}", r)
    return r


def modular_division(p: dict, pad: Scratchpad) -> int:
    total, m = _full_value(p, pad), p["m"]
    pad.say(f"Divide by {m} with remainder.")
    _, r = pad.op(total, "mod", m)
    pad.step(f"{total} = {m} * {total // m} + {r}", total)
    pad.say(f"The remainder is {r}.")
    return r


def modular_reduce_first(p: dict, pad: Scratchpad) -> int:
    m = p["m"]
    pad.say(f"Reduce every number modulo {m} first, and reduce again whenever a result reaches {m}.")

    def reduce(v: int) -> int:
        if v < m:
            return v
        t, r = pad.op(v, "mod", m)
        pad.step(f"{t} = {r}", r)
        return r

    total = None
    for q1, q2 in p["terms"]:
        r1, r2 = reduce(q1), reduce(q2)
        t, prod = pad.op(r1, "*", r2)
        pad.step(f"{t} = {prod}", prod)
        prod = reduce(prod)
        if total is None:
            total = prod
        else:
            t, total = pad.op(total, "+", prod)
            pad.step(f"{t} = {total}", total)
            total = reduce(total)
    if p["add"]:
        t, total = pad.op(total, "+", reduce(p["add"]))
        pad.step(f"{t} = {total}", total)
        total = reduce(total)
    return total


Strategy = Callable[[dict, Scratchpad], int]
STRATEGIES: dict[str, dict[str, Strategy]] = {
    "chain": {"stepwise": chain_stepwise, "labelled": chain_labelled, "nested": chain_nested,
              "checked": chain_checked},
    "word": {"running": word_running, "products-first": word_products_first, "gains-losses": word_gains_losses},
    "linear": {"isolate": linear_isolate, "undo": linear_undo, "checked": linear_checked, "expand": linear_expand},
    "modular": {"direct": modular_direct, "division": modular_division, "reduce-first": modular_reduce_first},
}


def strategies_for(problem: Problem) -> list[str]:
    """The strategies that apply to ``problem`` (expanding a bracket needs a bracket)."""
    names = list(STRATEGIES[problem.family])
    if problem.family == "linear" and problem.data["form"] != "a(x+b)":
        names.remove("expand")
    return names


@dataclass(frozen=True)
class Trajectory:
    strategy: str
    lines: tuple[str, ...]  # the reasoning inside <think>, one line each
    boxed: int
    steps: tuple[int, ...]  # the value of each step line
    n_ops: int  # computations made (where a slip can be planted)
    first_error: int | None  # None for a correct trajectory; len(steps) when only the boxed answer is wrong
    error_kind: str | None = None
    step_lines: tuple[int, ...] = ()  # the index in ``lines`` of each step line (the rest are prose)

    @property
    def response(self) -> str:
        return "<think>\n" + "\n".join(self.lines) + "\n</think>\n" + answer_line(self.boxed)


def answer_line(value: int) -> str:
    """The line after ``</think>`` that states the answer."""
    return f"The answer is \\boxed{{{value}}}."


def solve(problem: Problem, strategy: str, *, slip: Slip | None = None, avoid: frozenset[int] = frozenset()) -> Trajectory:
    """The trajectory of ``strategy`` on ``problem``; correct unless a ``slip`` is planted."""
    if strategy not in strategies_for(problem):
        raise ValueError(f"strategy {strategy!r} does not apply to {problem.family} problem {problem.id}")
    pad = Scratchpad(slip=slip, avoid=avoid)
    final = STRATEGIES[problem.family][strategy](problem.data, pad)
    if slip is None and final != problem.answer:
        raise AssertionError(f"strategy {strategy} solved {problem.id} as {final}, expected {problem.answer}")
    return Trajectory(strategy, tuple(pad.lines), final, tuple(pad.values), pad.n_ops, pad.first_error,
                      slip.kind if slip else None, tuple(pad.step_lines))


def reference_values(problem: Problem) -> frozenset[int]:
    """Every value a correct strategy writes as a step result: the step checker's notion of "on track"."""
    return frozenset(v for s in strategies_for(problem) for v in solve(problem, s).steps) | {problem.answer}


def corrupt(problem: Problem, strategy: str, rng: random.Random, *, kind: str | None = None) -> Trajectory:
    """A plausible wrong trajectory with a known first error and a wrong final answer.

    One computation (or, for kind ``answer``, the copying of the final answer) goes wrong; everything
    after it is done correctly on the wrong value. The wrong value is never one a correct strategy
    produces, so the error is detectable at exactly that step.
    """
    valid = reference_values(problem)
    clean = solve(problem, strategy)
    for _ in range(64):
        k = kind or rng.choice(ERROR_KINDS)
        if k == "answer":
            deltas = rng.sample([1, -1, 2, -2, 10], 5) + [3, -3, 97]  # the last ones: when all near values are on track
            boxed = next(problem.answer + d for d in deltas if problem.answer + d not in valid)
            return replace(clean, boxed=boxed, first_error=len(clean.steps), error_kind=k)
        traj = solve(problem, strategy, slip=Slip(rng.randrange(clean.n_ops), k, rng), avoid=valid)
        if traj.boxed != problem.answer and traj.first_error is not None:
            return traj
    raise RuntimeError(f"could not corrupt {problem.id} with strategy {strategy}")

