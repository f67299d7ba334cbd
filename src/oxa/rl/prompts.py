"""Prompts for RLVR: records with ``id``, a bare ``query`` and a gold ``answer``, from any source oxa reads.

A spec is one of:

* a benchmark or data set name known to :mod:`oxa.benchmarks` (``deepscaler``, ``aime24-val``,
  ``gsm8k-train``, ...), or ``synth-rl``: the synthetic world's RL split (``rl.jsonl`` of the world
  directory given as ``data_dir``, else that split of the default world, built in memory);
* a world directory written by ``oxa synth world`` (its ``rl.jsonl`` is read);
* a record file (JSONL, JSON array or Parquet) whose query and answer fields ``fields`` names;
* a verl-format Parquet file (``prompt`` = chat messages, ``reward_model.ground_truth``), as the
  authors' DeepScaleR and AIME24 files under ``shared/data/rl/``.

The query is always the bare problem: the paper's prompt suffix is removed where a file carries it
(verl prompts do), so that oxa's :class:`~oxa.prompting.PromptFormat` adds it exactly once, as in every
other stage. Every gold answer is checked with the grader's own reading
(:func:`oxa.verify.gold_answers`) here, so that a malformed one is an error naming its file, row and
field before training starts, not a crash mid-run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from oxa.benchmarks import benchmark_names, load_benchmark, register_benchmark, strip_suffix
from oxa.errors import OxaError
from oxa.io import read_records
from oxa.records import Fields
from oxa.verify import gold_answers

log = logging.getLogger(__name__)

SYNTH_RL = "synth-rl"
WORLD_RL_FILE = "rl.jsonl"


def _synth_rl(data_dir: Path | None) -> list[dict]:
    """The RL split of the world in ``data_dir`` if it holds one, else of the default world."""
    if data_dir is not None and (data_dir / WORLD_RL_FILE).is_file():
        return read_records(data_dir / WORLD_RL_FILE)
    from oxa.synth.world import WorldConfig, build_world

    return build_world(WorldConfig())["rl"]


register_benchmark(SYNTH_RL, _synth_rl)


def _answer_field(row: dict, fields: Fields) -> str:
    """Where the row's gold answer came from, for error messages."""
    return "reward_model.ground_truth" if isinstance(row.get("reward_model"), dict) else fields.answer


def load_prompts(spec: str | Path, *, fields: Fields = Fields(), limit: int | None = None,
                 data_dir: str | Path | None = None) -> list[dict]:
    """The RL prompts of ``spec`` (see the module docstring): every field of each row, plus ``id``,
    ``query`` (bare, non-empty text) and ``answer`` (a string, number, or list where any may match).

    ``limit`` keeps the first rows. Raises :class:`OxaError` naming the source, the row and the field
    for a row without a query or with an answer the grader cannot use.
    """
    key = str(spec)
    path = Path(key)
    if key not in benchmark_names() and path.is_dir():
        if not (path / WORLD_RL_FILE).is_file():
            raise OxaError(f"{path}: a directory, but not a synthetic world (no {WORLD_RL_FILE} in it); "
                           "give a record file, a verl parquet or a data set name")
        key = str(path / WORLD_RL_FILE)
    records = load_benchmark(key, data_dir=data_dir, limit=limit, fields=fields)
    with_suffix = 0
    out = []
    for i, r in enumerate(records):
        where = f"{key}: row {i + 1}"
        query = r.get("query")
        if not isinstance(query, str) or not query.strip():
            raise OxaError(f"{where}: field 'query' must be non-empty text, got {query!r}")
        try:
            gold_answers(r["answer"])
        except ValueError as e:
            raise OxaError(f"{where}: field {_answer_field(r, fields)!r} (the gold answer): {e}") from None
        bare = strip_suffix(query)
        with_suffix += bare != query
        out.append({**r, "query": bare})
    if with_suffix:
        log.info("%s: removed the paper's prompt suffix from %d of %d queries (the prompt format adds it)",
                 key, with_suffix, len(out))
    return out
