"""Data sets by name: a registry of loaders with what ``python -m oxa.data`` prints about each, and
:func:`load_benchmark`, which turns a name or any spec (see :mod:`oxa.data.sources`) into records with
``id``, ``query`` and ``answer`` (see :mod:`oxa.data.fields`).

Sets that are not shipped and not on the hub (the OXA paper's own RL files) are read from a data
directory: the ``data_dir`` argument (``oxa eval --data-dir``), else ``$OXA_DATA_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oxa.data.fields import canonical
from oxa.data.sources import dataset_dir_spec, dataset_rows, is_hub_spec, iter_rows, open_dataset, spec_name
from oxa.errors import OxaError
from oxa.records import Fields

DATA_DIR_ENV = "OXA_DATA_DIR"

BenchmarkLoader = Callable[[Path | None], list[dict]]
"""Takes the ``data_dir`` the caller gave (None if none) and returns records with id, query, answer."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a named set is and where it comes from (``python -m oxa.data`` prints these)."""

    description: str
    rows: int | None
    location: str  # "shipped", a hub spec, or "$OXA_DATA_DIR/<file>"
    source: str
    license: str


@dataclass(frozen=True)
class _Entry:
    loader: BenchmarkLoader
    info: DatasetInfo | None


_REGISTRY: dict[str, _Entry] = {}


def register_benchmark(name: str, loader: BenchmarkLoader, info: DatasetInfo | None = None) -> None:
    """Make ``load_benchmark(name)`` call ``loader(data_dir)``; replaces an earlier loader of that name."""
    _REGISTRY[name] = _Entry(loader, info)


def benchmark_names() -> list[str]:
    return sorted(_REGISTRY)


def benchmark_key(spec: str | os.PathLike) -> str:
    """The name a set's results are reported under: a registered name as it is, else the spec's short name."""
    return str(spec) if str(spec) in _REGISTRY else spec_name(spec)


def benchmark_info(name: str) -> DatasetInfo | None:
    """The description, size, location, source and license of a registered set (None if it gave none)."""
    if name not in _REGISTRY:
        raise OxaError(f"unknown benchmark {name!r}; known names: {', '.join(benchmark_names())}")
    return _REGISTRY[name].info


def data_dir_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where unshipped files are looked for: the argument, else ``$OXA_DATA_DIR``, else nowhere."""
    if data_dir is not None:
        return [Path(data_dir)]
    return [Path(os.environ[DATA_DIR_ENV])] if os.environ.get(DATA_DIR_ENV) else []


def find_data_file(relative: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """``<data dir>/<relative>`` if that file exists."""
    return next((base / relative for base in data_dir_candidates(data_dir) if (base / relative).is_file()), None)


def data_file(relative: str, data_dir: str | os.PathLike | None = None) -> Path:
    """``<data dir>/<relative>``, or an OxaError saying where it was looked for and how to point to it."""
    found = find_data_file(relative, data_dir)
    if found is not None:
        return found
    looked = ", ".join(str(base / relative) for base in data_dir_candidates(data_dir)) or "no data directory given"
    raise OxaError(f"data file {relative} not found ({looked}); pass --data-dir or set {DATA_DIR_ENV} "
                   "to the directory that holds it")


def load_benchmark(name_or_spec: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                   limit: int | None = None, fields: Fields | None = None) -> list[dict]:
    """The records of a registered set, a hub dataset, a dataset directory or a record file.

    A spec's query is ``fields.query`` (else ``problem`` or ``question``, or the user turn of a verl
    ``prompt``), its answer ``fields.answer`` (else verl's ``reward_model.ground_truth``; a GSM8K-style
    ``#### 42`` solution becomes ``42``) and its id ``fields.id`` (else ``<name>-<row>``, the name from
    :func:`~oxa.data.sources.spec_name`). ``limit`` keeps the first rows.
    """
    key = str(name_or_spec)
    if key in _REGISTRY:
        records = _REGISTRY[key].loader(Path(data_dir) if data_dir is not None else None)
        records, source = (records[:limit] if limit is not None else records), f"benchmark {key!r}"
    elif is_hub_spec(key) or dataset_dir_spec(key) is not None or Path(key).is_file():
        name, source = spec_name(name_or_spec), key
        records = [canonical(r, name, i, f"{key}: record {i + 1}", fields or Fields())
                   for i, r in enumerate(iter_rows(name_or_spec, limit=limit))]
    else:
        raise OxaError(f"unknown benchmark {key!r} (no such name, file or directory; hub datasets are written "
                       f"hf:ORG/NAME); known names: {', '.join(benchmark_names())}")
    for i, r in enumerate(records):
        missing = [k for k in ("id", "query", "answer") if r.get(k) in (None, "", [])]
        if missing:
            raise OxaError(f"{source}: record {i + 1} has no {', '.join(missing)}")
    return records


def hub_loader(name: str, spec: str, mirror: str | None = None) -> BenchmarkLoader:
    """A loader for a hub dataset; with ``mirror``, ``<data dir>/<mirror>`` (the same rows) is read instead
    when a data directory holds it, so tests and offline machines need no network."""

    def load(data_dir: Path | None) -> list[dict]:
        local = find_data_file(mirror, data_dir) if mirror else None
        try:
            rows = iter_rows(local) if local is not None else dataset_rows(open_dataset(spec))
        except OxaError as e:
            if mirror is None:
                raise
            raise OxaError(f"{e}; or put the file {mirror} in --data-dir / ${DATA_DIR_ENV}") from None
        where = str(local or spec)
        return [canonical(r, name, i, f"{where}: record {i + 1}", None) for i, r in enumerate(rows)]

    return load


def data_dir_loader(name: str, relative: str) -> BenchmarkLoader:
    """A loader for a file that is read from the data directory (see the module docstring)."""

    def load(data_dir: Path | None) -> list[dict]:
        path = data_file(relative, data_dir)
        return [canonical(r, name, i, f"{path}: record {i + 1}", None) for i, r in enumerate(iter_rows(path))]

    return load
