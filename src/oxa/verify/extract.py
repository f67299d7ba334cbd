"""Finding the answer a response commits to, and normalising answers and golds for comparison.

The answer is the last ``\\boxed{}`` in the text after the last ``</think>``; without a closing
``</think>`` a response that opened one has no answer (it was cut off mid-reasoning).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

Gold = str | int | float | Sequence[str | int | float]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_BRACES = re.compile(r"[{}]")
_BARE_TOKEN = re.compile(r"[^\s{}$]+")
# "1\,000" / "1\!000": thin spaces used as thousands separators, which math-verify reads as a product.
_THIN_SPACE_IN_NUMBER = re.compile(r"(?<=\d)\\[,!]\s*(?=\d{3}(?!\d))")


def answer_region(text: str, *, require_think: bool = False) -> str | None:
    """The part of a response that holds its final answer, or None if it has none.

    That is the text after the last ``</think>``. Without one: None if a ``<think>`` was opened (the
    reasoning never finished) or ``require_think`` is set (the paper's RL reward gives 0), else all text.
    """
    end = text.rfind(THINK_CLOSE)
    if end >= 0:
        return text[end + len(THINK_CLOSE):]
    if require_think or THINK_OPEN in text:
        return None
    return text


def _box_content(text: str, start: int, end: int) -> tuple[str, int] | None:
    """The argument of the box command whose name ends at ``start``, and where the box stops: ``{...}``
    with nested braces, or the token of the brace-less form ``\\boxed 5``; None if not closed before
    ``end``. (A box left open where a later box starts can never close, so the caller passes that
    later box's start as ``end``, which keeps extraction linear even on degenerate repetitions.)"""
    i = start
    while i < end and text[i] in " \t\r\n":
        i += 1
    if i == end or text[i] != "{":
        m = _BARE_TOKEN.match(text, i, end) if i > start else None  # "\boxedx" is another command
        return (m.group().rstrip(".$"), m.end()) if m and m.group().rstrip(".$") else None
    depth = 0
    for m in _BRACES.finditer(text, i, end):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[i + 1:m.start()], m.end()
    return None


def extract_answer(text: str, *, require_think: bool = False) -> str | None:
    """The final answer of a response: the last complete, non-empty ``\\boxed{}`` (or ``\\fbox{}``)
    after the last ``</think>`` (see :func:`answer_region`), stripped; None if there is none."""
    region = answer_region(text or "", require_think=require_think)
    if region is None:
        return None
    end = len(region)
    for m in reversed(list(_BOX_COMMAND.finditer(region))):
        box = _box_content(region, m.end(), end)
        if box is not None and box[0].strip():
            return box[0].strip()
        end = m.start()
    return None


def normalize_answer(answer: str) -> str:
    """Undo the notation math-verify misreads: surrounding ``$``/``\\(\\)``, a whole-answer ``\\boxed{}``,
    trailing newlines (Minerva's golds), thin spaces as thousands separators (``1\\,000``)."""
    s = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        inner = s[len(left):-len(right)]
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right) and left not in inner:
            s = inner.strip()
            break
    for cmd in _BOX_COMMANDS:
        if s.startswith(cmd):
            box = _box_content(s, len(cmd), len(s))
            if box is not None and box[1] == len(s):
                s = box[0].strip()
            break
    return _THIN_SPACE_IN_NUMBER.sub("", s)


def gold_answers(gold: Gold) -> tuple[str, ...]:
    """The accepted answers as normalised strings: a string, a number, or a list where any may match.

    Raises ValueError for an empty gold, a boolean or a non-finite number (a data error, not a miss).
    """
    values = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError(f"gold answer must be text, a number or a list of them, got {type(v).__name__}")
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"gold answer is not a finite number: {v}")
            v = repr(int(v)) if v.is_integer() else repr(v)
        s = normalize_answer(str(v))
        if s:
            out.append(s)
    if not out:
        raise ValueError("gold answer is empty")
    return tuple(out)
