"""Field mapping: any row of a public set or a user's data becomes a record with ``id``, ``query``, ``answer``.

* ``query`` is the bare problem text, without the paper's prompt suffix (the prompt format adds it, so
  adding it here too would duplicate it; verl rows, whose prompts already carry it, are stripped);
* ``answer`` is the gold answer as a stripped string, or a list of strings where any may match (Minerva);
* ``id`` is ``<name>-<row index>``, stable across runs, unless a user's ``Fields.id`` names an id field.

The original fields of the row are kept beside them.
"""

from __future__ import annotations

import re
from typing import Any

from oxa.errors import OxaError
from oxa.prompting import PAPER_SUFFIX
from oxa.records import Fields

_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
QUERY_FALLBACKS = ("problem", "question")
"""Where the public sets keep the problem text, tried after the user's query field."""


def strip_suffix(query: str, suffix: str = PAPER_SUFFIX) -> str:
    """The query without the paper's prompt suffix (the verl files include it in the prompt)."""
    return query[: -len(suffix)] if suffix and query.endswith(suffix) else query


def gsm8k_final_answer(solution: str) -> str | None:
    """The number after GSM8K's ``#### `` marker, thousands separators removed (``1,080`` -> ``1080``)."""
    m = _GSM8K_FINAL.search(solution)
    return _THOUSANDS.sub("", m.group(1)) if m else None


def clean_answer(answer: Any) -> Any:
    if isinstance(answer, str):
        return answer.strip()
    if isinstance(answer, (list, tuple)):
        return [a.strip() if isinstance(a, str) else a for a in answer]
    return answer


def _verl_user_turn(prompt: Any) -> str | None:
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            return users[-1]
    return None


def canonical(row: dict, name: str, i: int, where: str, fields: Fields | None) -> dict:
    """``row`` plus id/query/answer. With ``fields`` (a user's data) those names come first; the usual
    names of the public sets are the fallback, and without ``fields`` the id is always ``<name>-<row>``."""
    query_keys = ([fields.query] if fields else []) + list(QUERY_FALLBACKS)
    query = next((row[k] for k in query_keys if isinstance(row.get(k), str)), None)
    if query is None and (turn := _verl_user_turn(row.get("prompt"))) is not None:
        query = strip_suffix(turn)
    answer = row.get(fields.answer if fields else "answer")
    if answer is None and isinstance(row.get("reward_model"), dict):
        answer = row["reward_model"].get("ground_truth")
    if isinstance(answer, str) and "####" in answer:
        answer, row = gsm8k_final_answer(answer), {**row, "solution": answer}
    if query is None or answer is None:
        missing = "query" if query is None else "answer"
        have = ", ".join(sorted(map(str, row))) or "none"
        raise OxaError(f"{where}: no {missing} field (fields present: {have}); name it with --{missing}-field")
    rid = row.get(fields.id) if fields else None
    return {**row, "id": str(rid) if rid is not None else f"{name}-{i}", "query": query, "answer": clean_answer(answer)}
