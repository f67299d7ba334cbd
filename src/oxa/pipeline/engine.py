"""The stage runner behind ``oxa run``, ``oxa demo`` and ``oxa distill``: named steps, reused when unchanged.

Each :class:`Step` has a key, a hash of its settings and of its upstream steps' keys. ``manifest.json`` in
the run directory records, per finished step, the key, the outputs, what the step reported (counts, ...)
and its seconds; it is rewritten atomically after every step. A re-run reuses every step whose key is
unchanged and whose outputs all exist, and runs the rest in order, so after a crash (even ``kill -9``) or a
settings change only what must be redone is: a step that was cut off has no manifest entry and runs again,
from the partial files of its own library code where it keeps any (``oxa verify``, ``oxa score``,
``oxa generate``), else from the start (every output is written atomically). A step's own directory
(``workdir``) is stamped with its key: redone under another key, it starts empty. A failing step raises an
:class:`~oxa.errors.OxaError` that names it; the steps before it stay recorded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oxa.errors import OxaError
from oxa.io import write_json

MANIFEST = "manifest.json"
_PACKAGES = ("oxa", "torch", "transformers", "trl", "accelerate", "datasets", "math-verify", "pydantic")


@dataclass(frozen=True)
class Step:
    """One unit of work. ``run`` does it and returns what the manifest records about it; ``outputs`` (paths
    it writes) may also be returned by ``run`` as ``{"outputs": [...]}``. ``settings`` is everything the
    result depends on besides the upstream steps (hashed into the key; JSON-serialisable)."""

    name: str
    run: Callable[[], dict[str, Any]]
    settings: Any = None
    after: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest as is (kind, settings, inputs)
    workdir: str | None = None  # a directory only this step writes: emptied when it holds another key's files


STAMP = ".oxa_stage_key"


def _claim(workdir: Path, key: str) -> None:
    """Make ``workdir`` this key's: files a step left there under another key (other settings or inputs) are
    removed, those of an interrupted run with the same key are kept for the step to resume from."""
    stamp = workdir / STAMP
    if stamp.exists() and stamp.read_text(encoding="utf-8") != key:
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key, encoding="utf-8")


def step_key(step: Step, keys: dict[str, str]) -> str:
    blob = json.dumps({"step": step.name, "settings": step.settings, "after": [keys.get(a) for a in step.after]},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Python and the versions of the packages that shape a result (those installed)."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _exists(out: Path, path: str) -> bool:
    return (out / path).exists()  # an absolute path stays absolute


def run_steps(steps: Sequence[Step], out: str | Path, *, from_step: str | None = None, only: Sequence[str] = (),
              force: bool = False, header: dict[str, Any] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) ``steps`` in order in the run directory ``out``; returns the manifest.

    ``from_step`` redoes that step and every later one; ``only`` redoes just the named steps (their
    upstream steps must have finished); ``force`` redoes everything. ``header`` goes into the manifest
    beside ``versions`` and ``stages``.
    """
    names = [s.name for s in steps]
    if len(set(names)) < len(names):
        raise OxaError(f"two stages share a name: {sorted(n for n in set(names) if names.count(n) > 1)}")
    for given in ([from_step] if from_step else []) + list(only):
        if given not in names:
            raise OxaError(f"no stage named {given!r}; the stages are: {', '.join(names)}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    old = json.loads(path.read_text(encoding="utf-8")).get("stages", {}) if path.exists() else {}
    redo = set(names) if force else set(names[names.index(from_step):]) if from_step else set(only)
    manifest: dict[str, Any] = {**(header or {}), "versions": versions(), "stages": {}}
    keys: dict[str, str] = {}
    start = time.perf_counter()
    for i, step in enumerate(steps, start=1):
        tag = f"[{i}/{len(steps)}] {step.name}"
        key = keys[step.name] = step_key(step, keys)
        prev = old.get(step.name)
        done = bool(prev) and "key" in prev and all(_exists(out, p) for p in prev.get("outputs", []))
        if only and step.name not in only:
            if done:
                manifest["stages"][step.name] = {**prev, "reused": True}
                keys[step.name] = prev["key"]  # what the stages run with --only build on
            elif any(step.name in s.after for s in steps if s.name in only):
                raise OxaError(f"--only {', '.join(only)}: its upstream stage {step.name!r} has not finished; "
                               f"run it first (or use --from {step.name})")
            continue
        if done and prev["key"] == key and step.name not in redo:
            manifest["stages"][step.name] = {**prev, "reused": True}
            log(f"{tag}: up to date, reused")
            continue
        log(f"{tag} ...")
        t0 = time.perf_counter()
        try:
            if step.workdir is not None:
                _claim(Path(step.workdir), key)
            result = step.run()
        except Exception as e:
            message = str(e) if isinstance(e, OxaError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, OxaError):
                log(traceback.format_exc())
            manifest["stages"][step.name] = {**step.info, "failed": message}
            write_json(path, manifest)
            raise OxaError(f"stage {step.name!r} failed: {message} (the stages before it are kept in {path}; "
                           "fix the cause and run again to continue)") from e
        seconds = round(time.perf_counter() - t0, 2)
        outputs = list(dict.fromkeys([*step.outputs, *result.pop("outputs", [])]))
        manifest["stages"][step.name] = {"key": key, **step.info, **result, "outputs": outputs, "seconds": seconds,
                                         "reused": False}
        write_json(path, manifest)  # after every stage: a crash keeps what finished
        log(f"{tag}: done in {seconds:.1f} s {_brief(result.get('counts', {}))}")
    manifest["seconds"] = round(time.perf_counter() - start, 2)
    write_json(path, manifest)
    return manifest


def _brief(counts: dict[str, Any]) -> str:
    flat = {k: v for k, v in counts.items() if not isinstance(v, (dict, list))}
    return "(" + ", ".join(f"{k} {v}" for k, v in flat.items()) + ")" if flat else ""
