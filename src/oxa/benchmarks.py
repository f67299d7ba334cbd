"""Benchmarks and training sets by name: records with ``id``, ``query`` and ``answer``.

Every loader returns the original fields of each row plus three canonical ones, so later stages
(generate, evaluate, verify) need no field options for them:

* ``id``: ``<name>-<row index>``, stable across runs;
* ``query``: the bare problem text, without the paper's prompt suffix (the prompt format adds it, so
  adding it here too would duplicate it; the verl files, whose prompts already carry it, are stripped);
* ``answer``: the gold answer as a stripped string, or a list of strings where any may match (Minerva).

Data files are found in, in order: the ``data_dir`` argument, ``$OXA_DATA_DIR``, ``../shared/data``
relative to the current directory, and ``../shared/data`` relative to this repository. Other
benchmarks (the synthetic world's, for one) join with :func:`register_benchmark`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oxa.errors import OxaError
from oxa.io import read_records
from oxa.prompting import PAPER_SUFFIX
from oxa.records import Fields

DATA_DIR_ENV = "OXA_DATA_DIR"
PAPER_BENCHMARKS = ("aime24", "aime25", "hmmt25", "cmimc25", "brumo25", "minerva")
"""The six benchmarks of the OXA paper's main table."""

BenchmarkLoader = Callable[[Path | None], list[dict]]
"""Takes the ``data_dir`` the caller gave (None if none) and returns records with id, query, answer."""

_REGISTRY: dict[str, BenchmarkLoader] = {}
_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def register_benchmark(name: str, loader: BenchmarkLoader) -> None:
    """Make ``load_benchmark(name)`` call ``loader(data_dir)``; replaces an earlier loader of that name."""
    _REGISTRY[name] = loader


def benchmark_names() -> list[str]:
    return sorted(_REGISTRY)


def data_dir_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where data files are looked for, in order (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get(DATA_DIR_ENV):
        return [Path(os.environ[DATA_DIR_ENV])]
    repo = Path(__file__).resolve().parents[2]
    return [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"]


def data_file(relative: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first existing ``<candidate>/<relative>``, or an OxaError saying where it was looked for."""
    candidates = data_dir_candidates(data_dir)
    for base in candidates:
        if (base / relative).is_file():
            return base / relative
    searched = ", ".join(str(base / relative) for base in candidates)
    raise OxaError(f"data file {relative} not found (looked in {searched}); "
                   f"pass --data-dir or set {DATA_DIR_ENV} to the directory that holds it")


def load_benchmark(name_or_path: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                   limit: int | None = None, fields: Fields | None = None) -> list[dict]:
    """The records of a registered benchmark, or of a record file (JSONL, JSON array, Parquet).

    A file's query is ``fields.query`` (else ``problem`` or ``question``, or the user turn of a
    verl ``prompt``), its answer ``fields.answer`` (else verl's ``reward_model.ground_truth``; a
    GSM8K-style ``#### 42`` solution becomes ``42``) and its id ``fields.id`` (else ``<stem>-<row>``).
    ``limit`` keeps the first rows.
    """
    key = str(name_or_path)
    if key in _REGISTRY:
        records = _REGISTRY[key](Path(data_dir) if data_dir is not None else None)
        source = f"benchmark {key!r}"
    elif Path(key).is_file():
        path = Path(key)
        records = [_canonical(r, path.stem, i, f"{path}: record {i + 1}", fields or Fields())
                   for i, r in enumerate(read_records(path))]
        source = str(path)
    else:
        raise OxaError(f"unknown benchmark {key!r} (no such name or file); known names: {', '.join(benchmark_names())}")
    records = records[:limit] if limit is not None else records
    for i, r in enumerate(records):
        missing = [k for k in ("id", "query", "answer") if r.get(k) in (None, "", [])]
        if missing:
            raise OxaError(f"{source}: record {i + 1} has no {', '.join(missing)}")
    return records


# ------------------------------------------------------------------------------------ field mapping


def strip_suffix(query: str, suffix: str = PAPER_SUFFIX) -> str:
    """The query without the paper's prompt suffix (the verl files include it in the prompt)."""
    return query[: -len(suffix)] if suffix and query.endswith(suffix) else query


def gsm8k_final_answer(solution: str) -> str | None:
    """The number after GSM8K's ``#### `` marker, thousands separators removed (``1,080`` -> ``1080``)."""
    m = _GSM8K_FINAL.search(solution)
    return _THOUSANDS.sub("", m.group(1)) if m else None


def _clean_answer(answer: Any) -> Any:
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


def _canonical(row: dict, name: str, i: int, where: str, fields: Fields | None) -> dict:
    """``row`` plus id/query/answer. With ``fields`` (a user's file) those names come first; the usual
    names of the public sets are the fallback, and without ``fields`` the id is always ``<name>-<row>``."""
    query_keys = ([fields.query] if fields else []) + ["problem", "question"]
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
    return {**row, "id": str(rid) if rid is not None else f"{name}-{i}", "query": query,
            "answer": _clean_answer(answer)}


def _file_loader(name: str, relative: str) -> BenchmarkLoader:
    """A loader for one of the public files under the data directory (its ``README.md`` lists them)."""

    def load(data_dir: Path | None) -> list[dict]:
        path = data_file(relative, data_dir)
        return [_canonical(r, name, i, f"{path}: record {i + 1}", None) for i, r in enumerate(read_records(path))]

    return load


_FILES = {
    **{name: f"benchmarks/{name}.json" for name in (*PAPER_BENCHMARKS, "math500")},
    "gsm8k": "gsm8k/test.jsonl",
    "gsm8k-train": "gsm8k/train.jsonl",
    "deepscaler": "rl/deepscaler-10k.parquet",
    "aime24-val": "rl/aime24-val.parquet",
}
for _name, _relative in _FILES.items():
    register_benchmark(_name, _file_loader(_name, _relative))
