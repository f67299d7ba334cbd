"""The four per-record values selection needs (PPL, query, verdict, length), as aligned arrays.

From records in memory (:func:`extract_columns`, whose errors name the record and field), or straight
from a JSONL/Parquet file by Arrow (:func:`read_columns`), parsing full records only for the selected
rows (:func:`read_rows`), so selecting 50k of millions of records never builds a dict per record.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oxa.errors import RecordError


@dataclass
class Columns:
    """The per-record values selection needs, as arrays aligned with the input records."""

    ppl: np.ndarray  # float64, NaN where missing / null / NaN / inf
    group: np.ndarray  # int64 code of the group key (the query)
    correct: np.ndarray | None  # int8: 1 correct, 0 incorrect, -1 not verified; None when no record has the field
    length: np.ndarray | None = None  # float64 response length (tokens when known), for ``gaussian``


def _where(source: str, i: int) -> str:
    return f"{source}: record {i + 1}"


def _check_types(values: list, allowed: tuple[type, ...], name: str, source: str, what: str) -> None:
    """Raise on the first value whose type is not allowed (bool is never a number)."""
    if set(map(type, values)) <= set(allowed):
        return
    for i, v in enumerate(values):
        if type(v) not in allowed:
            raise RecordError(f"{_where(source, i)}: field {name!r} must be {what}, got {type(v).__name__} {v!r:.60}")


def _factorize(keys: list, records: Sequence[dict], name: str, source: str) -> np.ndarray:
    """Integer codes for the group keys (equal keys, equal codes): Arrow's C++ hashing when the column
    has one plain type and no nulls, else a Python dict that also finds the offending record."""
    import pyarrow as pa

    try:
        arr = pa.array(keys)
        if arr.null_count == 0 and not pa.types.is_nested(arr.type):
            return arr.dictionary_encode().indices.to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass  # mixed types (e.g. ints and strings) are hashed below
    codes: dict[Any, int] = {}
    group = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        try:
            if key is None:
                raise TypeError
            group[i] = codes.setdefault(key, len(codes))
        except TypeError:
            have = ", ".join(sorted(map(str, records[i]))) or "none"
            state = "is missing or null" if key is None else f"must be text or a number, got {type(key).__name__}"
            raise RecordError(f"{_where(source, i)}: group field {name!r} {state} (fields present: {have}); "
                              "name the field that identifies the query with --query-field or --group-field") from None
    return group


def extract_columns(
    records: Sequence[dict],
    *,
    ppl_field: str = "ppl",
    group_field: str = "query",
    correct_field: str = "correct",
    length_field: str | None = None,
    response_field: str = "response",
    source: str = "records",
) -> Columns:
    """Pull the selection columns out of ``records``; a wrong type is an error naming record and field.

    A missing, null, NaN or infinite PPL becomes NaN (dropped and counted later), but a PPL field absent
    from every record is an error: the input was most likely not scored. With ``length_field`` the length
    is that field where present, else the length of the response text in characters.
    """
    n = len(records)
    raw = [r.get(ppl_field) for r in records]
    _check_types(raw, (float, int, type(None)), ppl_field, source, "a number or null")
    if n and all(v is None for v in raw) and not any(ppl_field in r for r in records):
        have = ", ".join(sorted(map(str, records[0]))) or "none"
        raise RecordError(
            f"{source}: no record has the PPL field {ppl_field!r} (fields present: {have}); "
            "score the data first (oxa score) or name the field with --ppl-field"
        )
    ppl = np.array(raw, dtype=np.float64).reshape(n)  # None -> NaN
    ppl[~np.isfinite(ppl)] = np.nan

    group = _factorize([r.get(group_field) for r in records], records, group_field, source)

    correct = None
    flags = [r.get(correct_field) for r in records]
    if any(f is not None for f in flags):
        _check_types(flags, (bool, type(None)), correct_field, source, "true, false or null")
        correct = np.array([-1 if f is None else int(f) for f in flags], dtype=np.int8)

    length = None
    if length_field is not None:
        lengths = [r.get(length_field) for r in records]
        _check_types(lengths, (int, float, type(None)), length_field, source, "a number or null")
        length = np.array(lengths, dtype=np.float64).reshape(n)  # None -> NaN: use the text's length instead
        for i in np.flatnonzero(~np.isfinite(length)):
            text = records[i].get(response_field)
            if not isinstance(text, str):
                raise RecordError(
                    f"{_where(source, i)}: neither a length field {length_field!r} nor a text response field "
                    f"{response_field!r}; the gaussian method ranks responses by length"
                )
            length[i] = len(text)
    return Columns(ppl=ppl, group=group, correct=correct, length=length)


# ---------------------------------------------------------------------------------------------------
# Reading millions of records: columns by Arrow, full records only for the selected rows


def _first_record(path: Path) -> dict | None:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None


def _arrow_type(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, str):
        return pa.string()
    if isinstance(value, int) and not isinstance(value, bool):
        return pa.int64()
    return None


def read_columns(
    path: str | os.PathLike,
    *,
    ppl_field: str = "ppl",
    group_field: str = "query",
    correct_field: str = "correct",
    length_field: str | None = None,
) -> Columns | None:
    """The selection columns of a JSONL or Parquet file, parsed by Arrow in C++ without a dict per record.

    Returns None when the file is not that regular - a JSON array, a malformed line, a field whose type
    changes between records, a missing group key or length, or no PPL at all: the record-by-record
    reader then handles it and its error names the line and field. Equal results either way.
    """
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    path = Path(path)
    name = path.name.lower()
    wanted = [ppl_field, group_field, correct_field] + ([length_field] if length_field else [])
    try:
        if name.endswith(".parquet"):
            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[f for f in dict.fromkeys(wanted) if f in present])
        elif name.endswith((".jsonl", ".ndjson")):
            first = _first_record(path)
            group_type = _arrow_type(first.get(group_field)) if first else None
            if group_type is None:
                return None
            types = {ppl_field: pa.float64(), group_field: group_type, correct_field: pa.bool_()}
            if length_field:
                types[length_field] = pa.float64()
            schema = pa.schema(list(types.items()))
            options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            table = pj.read_json(path, parse_options=options)
        else:
            return None
    except (pa.ArrowException, OSError, ValueError):
        return None
    if ppl_field not in table.column_names or group_field not in table.column_names:
        return None
    ppl_col, group_col = table[ppl_field], table[group_field]
    if not pa.types.is_floating(ppl_col.type) and not pa.types.is_integer(ppl_col.type):
        return None
    if ppl_col.null_count == len(ppl_col) or group_col.null_count or pa.types.is_nested(group_col.type):
        return None
    ppl = ppl_col.cast(pa.float64()).fill_null(math.nan).to_numpy()
    ppl = np.where(np.isfinite(ppl), ppl, np.nan)
    group = group_col.combine_chunks().dictionary_encode().indices.to_numpy().astype(np.int64)
    correct = None
    if correct_field in table.column_names and table[correct_field].null_count < len(table):
        col = table[correct_field]
        if not pa.types.is_boolean(col.type):
            return None
        correct = np.where(col.is_valid().to_numpy(zero_copy_only=False),
                           col.fill_null(False).to_numpy(zero_copy_only=False), -1).astype(np.int8)
    length = None
    if length_field:
        if length_field not in table.column_names or table[length_field].null_count:
            return None  # the record reader falls back to the response text's length
        length = table[length_field].cast(pa.float64()).to_numpy()
    return Columns(ppl=ppl, group=group, correct=correct, length=length)


def read_rows(path: str | os.PathLike, columns: Columns) -> Callable[[np.ndarray], list[dict]] | None:
    """A function returning the full records at given (sorted) positions of the file ``columns`` came from.

    Parquet is streamed batch by batch, keeping the requested rows. For JSONL the non-blank lines are
    indexed first and their count checked against the columns (None if it differs, and the caller reads
    every record instead); only the requested lines are parsed, so a 50k selection out of millions
    costs one pass over the bytes.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    n = len(columns.ppl)
    if path.name.lower().endswith(".parquet"):

        def parquet_rows(indices: np.ndarray) -> list[dict]:
            out, start = [], 0  # batch by batch, so only one batch of full rows is in memory at a time
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                lo, hi = np.searchsorted(indices, [start, start + batch.num_rows])
                if hi > lo:
                    out += batch.take(indices[lo:hi] - start).to_pylist()
                start += batch.num_rows
            return out

        return parquet_rows
    offsets = np.empty(n, dtype=np.int64)
    count = 0
    with open(path, "rb") as f:
        pos = 0
        for line in f:
            if line.strip():
                if count == n:
                    return None
                offsets[count] = pos
                count += 1
            pos += len(line)
    if count != n:
        return None

    def rows(indices: np.ndarray) -> list[dict]:
        out = []
        with open(path, "rb") as f:
            for i in indices:
                f.seek(int(offsets[i]))
                out.append(json.loads(f.readline()))
        return out

    return rows
