"""Reading and writing record files.

One record is one trajectory (a dict). Inputs may be JSONL, a JSON array or Parquet; outputs are JSONL
by default (Parquet when the path ends in ``.parquet``). Every write is atomic: the data goes to a
temporary file in the same directory, is flushed to disk, and is renamed over the target, so a reader
never sees half a file. Stages that take long use :class:`ResumableWriter` to append finished results
as they go and pick up where an interrupted run stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from oxa.errors import RecordError


@dataclass
class ReadStats:
    """What a read skipped (only with ``skip_bad``): counts, and the first few reasons for the log."""

    read: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < 5:
            self.reasons.append(reason)


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".json"):
        return "json"
    return "jsonl"


def read_records(
    path: str | os.PathLike, *, skip_bad: bool = False, stats: ReadStats | None = None, fmt: str | None = None
) -> list[dict]:
    """Read every record of a JSONL, JSON-array or Parquet file.

    A malformed line (or a line that is not a JSON object) raises :class:`RecordError` naming the file
    and the 1-based line number, unless ``skip_bad`` is set: then it is skipped and counted in ``stats``.
    """
    return list(iter_records(path, skip_bad=skip_bad, stats=stats, fmt=fmt))


def iter_records(
    path: str | os.PathLike, *, skip_bad: bool = False, stats: ReadStats | None = None, fmt: str | None = None
) -> Iterator[dict]:
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    kind = _format_of(path, fmt)
    if kind == "parquet":
        yield from _iter_parquet(path, stats)
    elif kind == "json" and _starts_with_bracket(path):
        yield from _iter_json_array(path, skip_bad, stats)
    else:
        yield from _iter_jsonl(path, skip_bad, stats)


def _starts_with_bracket(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        while ch := f.read(1):
            if not ch.isspace():
                return ch == "["
    return False


def _iter_jsonl(path: Path, skip_bad: bool, stats: ReadStats) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except ValueError as e:
                reason = f"{path}:{lineno}: malformed record: {e}"
                if not skip_bad:
                    raise RecordError(reason + " (use --skip-bad to skip and count such lines)") from None
                stats.skip(reason)
                continue
            stats.read += 1
            yield record


def _iter_json_array(path: Path, skip_bad: bool, stats: ReadStats) -> Iterator[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:
        raise RecordError(f"{path}: malformed JSON array: {e}") from None
    if not isinstance(data, list):
        raise RecordError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            reason = f"{path}: element {i}: expected a JSON object, got {type(record).__name__}"
            if not skip_bad:
                raise RecordError(reason)
            stats.skip(reason)
            continue
        stats.read += 1
        yield record


def _iter_parquet(path: Path, stats: ReadStats) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for corrupt files
        raise RecordError(f"{path}: unreadable Parquet file: {e}") from None
    for record in table.to_pylist():
        stats.read += 1
        yield record


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays (from Parquet or scoring) serialise as plain numbers and lists
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(record: dict) -> str:
    """One JSONL line. NaN/inf are written as null so the file stays valid JSON."""
    return json.dumps(_finite(record), ensure_ascii=False, default=_json_default)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(_finite(obj), indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_records(path: str | os.PathLike, records: Iterable[dict], *, fmt: str | None = None) -> int:
    """Write records atomically (JSONL, or Parquet for ``.parquet`` / ``fmt='parquet'``); return the count."""
    path = Path(path)
    if _format_of(path, fmt) == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [_finite(r) for r in records]
        with atomic_open(path, "wb") as f:
            pq.write_table(pa.Table.from_pylist(rows), f)
        return len(rows)
    n = 0
    with atomic_open(path) as f:
        for record in records:
            f.write(dumps(record) + "\n")
            n += 1
    return n


def _cut_torn_tail(path: Path, block: int = 1 << 16) -> None:
    """Truncate ``path`` after its last newline: a kill mid-write leaves a last line without one, and a
    record appended to it would be glued onto the torn text and lost when the file is read back."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                pos = start + newline + 1
                break
            pos = start
        if pos < end:
            f.truncate(pos)


class ResumableWriter:
    """Append-only progress file for a long stage, keyed by the input position of each record.

    Results are appended to ``<out>.partial`` (one JSON line ``{"_i": index, ...record}``) and flushed
    after every batch, so a killed run loses at most the batch in flight. A re-run with the same output
    path cuts off a torn last line (so its own first record starts on a fresh line), reads the finished
    indices back, skips them, and :meth:`finish` writes the complete output in input order atomically
    and removes the progress file. Several writers (one per distributed rank) may share an output via
    ``suffix``.
    """

    def __init__(self, out: str | os.PathLike, suffix: str = ""):
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + suffix + ".partial")
        self.done: dict[int, dict] = {}
        if self.path.exists():
            _cut_torn_tail(self.path)
            self.done = self.load(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    @staticmethod
    def load(path: Path) -> dict[int, dict]:
        """The finished results in a progress file; a line torn by a kill (bad JSON or UTF-8) is skipped."""
        done: dict[int, dict] = {}
        with open(path, "rb") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:  # UnicodeDecodeError included: the item is simply redone
                    continue
                if isinstance(row, dict) and "_i" in row:
                    done[int(row.pop("_i"))] = row
        return done

    def add(self, items: Iterable[tuple[int, dict]]) -> None:
        for i, record in items:
            self.done[i] = record
            self._f.write(dumps({"_i": i, **record}) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def finish(self, n_expected: int | None = None, *, fmt: str | None = None, extra_parts: Iterable[Path] = ()) -> list[dict]:
        """Merge this writer's results (and other ranks' ``extra_parts``), write ``out`` in order."""
        self.close()
        done = dict(self.done)
        for part in extra_parts:
            done.update(self.load(part))
        if n_expected is not None and len(done) != n_expected:
            missing = sorted(set(range(n_expected)) - set(done))[:5]
            raise RuntimeError(f"{self.out}: {len(done)} of {n_expected} results present; missing e.g. {missing}")
        records = [done[i] for i in sorted(done)]
        write_records(self.out, records, fmt=fmt)
        for part in [self.path, *extra_parts]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
        return records

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
