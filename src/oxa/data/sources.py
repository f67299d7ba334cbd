"""Where rows come from: a record file, a local dataset directory, or a Hugging Face hub dataset.

A *spec* names one of them:

* ``hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`` - a hub dataset through ``datasets.load_dataset``, for
  example ``hf:agentica-org/DeepScaleR-Preview-Dataset`` or ``hf:openai/gsm8k/main:test``;
* ``DIR[:SPLIT]`` - a local dataset directory: what ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
  wrote (read with ``datasets.load_from_disk``), or a directory of Parquet / JSON(L) / CSV files, such as
  a downloaded hub repository (read with ``datasets.load_dataset(DIR)``, the hub's own code path);
* ``FILE`` - a JSONL file, a JSON array or a Parquet file (verl's included), read by :mod:`oxa.io`.

Without ``:SPLIT`` a dataset with one split gives that split; one with several is an error that lists
them. Hub and directory datasets are Arrow tables mapped from disk, so :func:`iter_rows` walks a
teacher pool of millions of rows in batches without holding it in memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxa.errors import OxaError

HUB_PREFIX = "hf:"
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes


@dataclass(frozen=True)
class HubSpec:
    """``hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]``, parsed."""

    repo: str
    config: str | None = None
    split: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        return (HUB_PREFIX + self.repo + (f"/{self.config}" if self.config else "") + (f":{self.split}" if self.split else "")
                + (f"@{self.revision}" if self.revision else ""))


def is_hub_spec(spec: str | os.PathLike) -> bool:
    return isinstance(spec, str) and spec.startswith(HUB_PREFIX)


def parse_hub_spec(spec: str) -> HubSpec:
    """Split ``hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`` into its parts, or an OxaError showing the form."""
    body, _, revision = spec[len(HUB_PREFIX):].partition("@")
    body, _, split = body.partition(":")
    parts = body.split("/")
    if not 1 <= len(parts) <= 3 or not all(parts) or (_ and not split) or ("@" in spec and not revision):
        raise OxaError(f"{spec!r}: a hub dataset is written hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION], "
                       "e.g. hf:openai/gsm8k/main:test")
    repo = "/".join(parts[:2])
    return HubSpec(repo, parts[2] if len(parts) == 3 else None, split or None, revision or None)


def dataset_dir_spec(spec: str | os.PathLike) -> tuple[Path, str | None] | None:
    """``(directory, split)`` when ``spec`` is ``DIR`` or ``DIR:SPLIT`` of an existing directory, else None."""
    path = Path(spec)
    if path.is_dir():
        return path, None
    head, sep, split = str(spec).rpartition(":")
    if sep and head and split and "/" not in split and Path(head).is_dir():
        return Path(head), split
    return None


def spec_name(spec: str | os.PathLike) -> str:
    """A short name for the records of a spec (their ids are ``<name>-<row>``; `oxa eval` reports under it):
    a hub dataset's NAME (plus the CONFIG and SPLIT given), a directory's name (plus SPLIT), a file's stem."""
    if is_hub_spec(spec):
        hub = parse_hub_spec(str(spec))
        name = "-".join(p for p in (hub.repo.rsplit("/", 1)[-1], hub.config, hub.split) if p)
    elif (found := dataset_dir_spec(spec)) is not None:
        name = "-".join(p for p in (found[0].resolve().name, found[1]) if p)
    else:
        name = Path(spec).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _one_line(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _pick_split(data: Any, split: str | None, where: str):
    """The split asked for, or the only one; a DatasetDict with several and none asked is an error."""
    from datasets import DatasetDict

    if not isinstance(data, DatasetDict):
        if split is not None:
            raise OxaError(f"{where}: holds a single dataset without splits; drop ':{split}'")
        return data
    if split is None:
        if len(data) == 1:
            return next(iter(data.values()))
        raise OxaError(f"{where}: has splits {', '.join(data)}; name one as {where}:SPLIT")
    if split not in data:
        raise OxaError(f"{where}: no split {split!r} (it has {', '.join(data)})")
    return data[split]


def load_hub(hub: HubSpec):
    """A ``datasets.Dataset`` from the hub (or the local ``datasets`` cache); any failure is one line naming it."""
    import datasets

    try:
        data = datasets.load_dataset(hub.repo, hub.config, split=hub.split, revision=hub.revision)
    except Exception as e:  # no network, unknown id, gated repo, bad config or split: all say which dataset
        raise OxaError(f"{hub}: cannot load this dataset from the Hugging Face hub ({_one_line(e)}); "
                       "check the id, or download it and pass its directory") from None
    return _pick_split(data, None, str(hub))


def load_dataset_dir(path: Path, split: str | None = None):
    """A ``datasets.Dataset`` from a ``save_to_disk`` directory or a directory of data files."""
    import datasets

    where = str(path)
    try:
        if any((path / marker).is_file() for marker in _SAVED_MARKERS):
            data = datasets.load_from_disk(str(path))
        else:
            data = datasets.load_dataset(str(path))
    except Exception as e:
        raise OxaError(f"{where}: not a dataset directory that `datasets` can read ({_one_line(e)}); it should hold "
                       "what save_to_disk wrote, or Parquet / JSON(L) / CSV files") from None
    return _pick_split(data, split, where)


def open_dataset(spec: str | os.PathLike):
    """The ``datasets.Dataset`` of a hub spec or a dataset directory (see the module docstring)."""
    if is_hub_spec(spec):
        return load_hub(parse_hub_spec(str(spec)))
    found = dataset_dir_spec(spec)
    if found is None:
        raise OxaError(f"{spec}: not a hub spec (hf:ORG/NAME) or a dataset directory")
    return load_dataset_dir(*found)


def dataset_rows(data, *, limit: int | None = None, batch_size: int = 1000) -> Iterator[dict]:
    """The rows of a ``datasets.Dataset`` as dicts, read a batch at a time from its Arrow table."""
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    for batch in data.iter(batch_size=batch_size):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns)):
            yield dict(zip(columns, values))


def iter_rows(spec: str | os.PathLike, *, limit: int | None = None, batch_size: int = 1000) -> Iterator[dict]:
    """The raw rows of any spec, lazily: a hub dataset, a dataset directory, or a record file."""
    if is_hub_spec(spec) or dataset_dir_spec(spec) is not None:
        yield from dataset_rows(open_dataset(spec), limit=limit, batch_size=batch_size)
        return
    from itertools import islice

    from oxa.io import iter_records

    if not Path(spec).is_file():
        raise OxaError(f"{spec}: no such file, directory or hub spec (hub datasets are written hf:ORG/NAME)")
    yield from islice(iter_records(Path(spec)), limit)
