"""Problem families of the synthetic math world: exact integer answers, a difficulty knob, seeded.

A :class:`Problem` holds its family's structured ``data`` (JSON-serialisable, stored in every record)
so the teacher can re-solve it and the step checker can judge a response without parsing the query.
Difficulty 1-3 raises the number of steps and the size of the numbers.

Families:

* ``chain``   - "Start with 7. Add 5, then multiply by 3, then subtract 4."  (difficulty + 1 operations)
* ``word``    - a story of items gained and lost, some in packs ("3 boxes of 6 pencils")
* ``linear``  - one linear equation in x with an integer solution (3 forms, by difficulty)
* ``modular`` - the remainder of a sum of products divided by m
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("chain", "word", "linear", "modular")
DIFFICULTIES = {1: "easy", 2: "medium", 3: "hard"}


@dataclass(frozen=True)
class Problem:
    id: str
    family: str
    difficulty: int
    query: str
    answer: int
    data: dict[str, Any] = field(hash=False)

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "query": self.query, "answer": str(self.answer), "family": self.family,
                "difficulty": self.difficulty, "problem": self.data}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Problem:
        """The problem a record was made from (teacher, benchmark and RL records all carry it)."""
        return cls(id=str(record.get("query_id", record.get("id", ""))), family=record["family"],
                   difficulty=int(record["difficulty"]), query=record["query"], answer=int(record["answer"]),
                   data=record["problem"])


# ---------------------------------------------------------------- chain
CHAIN_WORDS = {"+": "add {x}", "-": "subtract {x}", "*": "multiply by {x}", "/": "divide by {x}"}


def make_chain(rng: random.Random, difficulty: int) -> tuple[str, int, dict]:
    top = 5 + 5 * difficulty
    value = rng.randint(2, top)
    start, ops = value, []
    for _ in range(difficulty + 1):
        choices = ["+", "*"] + (["-"] if value > 1 else [])
        divisors = [d for d in range(2, 10) if value % d == 0 and value // d > 1]
        if divisors:
            choices.append("/")
        op = rng.choice(choices)
        if op == "+":
            x = rng.randint(2, top)
        elif op == "-":
            x = rng.randint(1, value - 1)
        elif op == "*":
            x = rng.randint(2, 3 + difficulty)
        else:
            x = rng.choice(divisors)
        value = apply(value, op, x)
        ops.append([op, x])
    said = [CHAIN_WORDS[op].format(x=x) for op, x in ops]
    steps = ", then ".join(said)
    query = f"Start with {start}. {steps[0].upper()}{steps[1:]}. What number do you get?"
    return query, value, {"start": start, "ops": ops}


# ---------------------------------------------------------------- word
ITEMS = [("pencils", "boxes"), ("apples", "bags"), ("stickers", "sheets"), ("marbles", "jars"),
         ("cards", "decks"), ("cookies", "trays"), ("stamps", "books"), ("beads", "strings")]
NAMES = ["Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Ines", "Kai"]


def make_word(rng: random.Random, difficulty: int) -> tuple[str, int, dict]:
    """Events are [sign, count, size]: size 1 is single items, count > 1 with size > 1 is packs."""
    name, (item, pack) = rng.choice(NAMES), rng.choice(ITEMS)
    total = start = rng.randint(5, 10 + 10 * difficulty)
    events = []
    for _ in range(difficulty + 1):
        packs = rng.random() < 0.6
        count, size = (rng.randint(2, 2 + 2 * difficulty), rng.randint(3, 4 + 3 * difficulty)) if packs else (
            rng.randint(2, 10 + 5 * difficulty), 1)
        sign = -1 if (rng.random() < 0.4 and count * size <= total) else 1
        total += sign * count * size
        events.append([sign, count, size])
    said = []
    for sign, count, size in events:
        amount = f"{count} {pack} of {size} {item}" if size > 1 else f"{count} {item}"
        said.append(f"{'buys' if sign > 0 else 'gives away'} {amount}")
    story = ". Then she ".join(said) if name in ("Mia", "Ava", "Zoe", "Lena", "Ines") else ". Then he ".join(said)
    query = f"{name} has {start} {item}. {name} {story}. How many {item} does {name} have now?"
    return query, total, {"start": start, "events": events, "item": item}


# ---------------------------------------------------------------- linear
def make_linear(rng: random.Random, difficulty: int) -> tuple[str, int, dict]:
    """Difficulty 1: ax + b = c; 2: ax - b = c; 3: a(x + b) = c."""
    x = rng.randint(1, 6 + 6 * difficulty)
    a = rng.randint(2, 3 + 2 * difficulty)
    b = rng.randint(1, 5 + 10 * difficulty)
    form = {1: "ax+b", 2: "ax-b", 3: "a(x+b)"}[difficulty]
    c = {"ax+b": a * x + b, "ax-b": a * x - b, "a(x+b)": a * (x + b)}[form]
    eq = {"ax+b": f"{a}x + {b} = {c}", "ax-b": f"{a}x - {b} = {c}", "a(x+b)": f"{a}(x + {b}) = {c}"}[form]
    return f"Solve for x: {eq}. What is x?", x, {"form": form, "a": a, "b": b, "c": c}


# ---------------------------------------------------------------- modular
def make_modular(rng: random.Random, difficulty: int) -> tuple[str, int, dict]:
    """The remainder of p1*q1 (+ p2*q2 ...) (+ c) divided by m; one more term per difficulty level."""
    m = rng.randint(3, 5 + 3 * difficulty)
    terms = [[rng.randint(m + 1, 12 * difficulty + m), rng.randint(m + 1, 9 + 6 * difficulty)]]
    if difficulty >= 3:
        terms.append([rng.randint(m + 1, 20 + m), rng.randint(m + 1, 15)])
    add = rng.randint(m + 1, 40) if difficulty >= 2 else 0
    expr = " + ".join(f"{p} * {q}" for p, q in terms) + (f" + {add}" if add else "")
    value = sum(p * q for p, q in terms) + add
    return f"What is the remainder when {expr} is divided by {m}?", value % m, {"terms": terms, "add": add, "m": m}


MAKERS = {"chain": make_chain, "word": make_word, "linear": make_linear, "modular": make_modular}


def apply(a: int, op: str, b: int) -> int:
    """Exact integer arithmetic for the four operations and ``mod`` (division must be exact)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0 or a % b:
            raise ValueError(f"{a} / {b} is not an integer")
        return a // b
    if op == "mod":
        return a % b
    raise ValueError(f"unknown operation {op!r}")


def make_problem(rng: random.Random, family: str, difficulty: int, id: str) -> Problem:
    if family not in MAKERS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty}")
    query, answer, data = MAKERS[family](rng, difficulty)
    return Problem(id=id, family=family, difficulty=difficulty, query=query, answer=answer, data=data)
