"""Stage kinds: which settings model a recipe stage takes, what it runs, and what it produces.

A kind is a function ``run(settings, ctx)`` registered with :func:`stage_kind`: it does the work (usually
by calling the library function behind an ``oxa`` command) and returns what the manifest records
(``{"counts": {...}}``). Its settings model is the command's own; ``output_field`` is the setting the
engine fills (``fill``, relative to the stage's directory) and ``output`` is what ``${STAGE}`` refers to.
``command`` names the ``oxa`` command that runs the same settings, which is what a launcher starts.
The shipped kinds live in :mod:`oxa.pipeline.stages`; a recipe may name any other as ``module:attr``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from oxa.errors import OxaError

_KINDS: dict[str, StageKind] = {}


@dataclass(frozen=True)
class StageContext:
    """What a running stage may need besides its settings."""

    name: str
    dir: Path  # RUN_DIR/<name>
    run_dir: Path
    log: Callable[[str], None]
    launched: bool = False  # a launcher already ran the stage's command: the kind only reads what it wrote


@dataclass(frozen=True, eq=False)
class StageKind:
    name: str
    settings: type[BaseModel] | str  # the model, or "module:Class" (imported when a recipe uses the kind)
    run: Callable[[Any, StageContext], dict[str, Any]]
    output_field: str | None = "output"
    fill: str = "{name}.jsonl"  # the output setting's value, relative to the stage's directory
    output: str | Callable[[Any, Path], Path] | None = None  # what ${STAGE} is: relative path, or f(settings, dir)
    command: str | None = None  # `oxa COMMAND --config FILE` runs the same work (under a launcher)

    @cached_property
    def model(self) -> type[BaseModel]:
        if isinstance(self.settings, str):
            module, _, attr = self.settings.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.settings

    def fill_value(self, stage_dir: Path, name: str) -> Path:
        return (stage_dir / self.fill.format(name=name)).resolve() if self.fill != "." else stage_dir

    def output_path(self, settings: Any, stage_dir: Path, name: str) -> Path:
        if callable(self.output):
            return Path(self.output(settings, stage_dir))
        if self.output is not None:
            return stage_dir / self.output.format(name=name) if self.output != "." else stage_dir
        return self.fill_value(stage_dir, name)

    def __call__(self, settings: Any, ctx: StageContext) -> dict[str, Any]:
        return self.run(settings, ctx)


def stage_kind(name: str, settings: type[BaseModel] | str, **kw: Any) -> Callable[[Callable], StageKind]:
    """Decorator: make ``run(settings, ctx) -> dict`` a stage kind named ``name`` and register it.

    Keywords are :class:`StageKind`'s fields (``output_field``, ``fill``, ``output``, ``command``)."""

    def register(run: Callable) -> StageKind:
        kind = StageKind(name, settings, run, **kw)
        _KINDS[name] = kind
        return kind

    return register


def get_kind(name: str, *, where: str = "recipe") -> StageKind:
    """A registered kind, or ``module:attr`` naming a :class:`StageKind` (a recipe's own stage)."""
    import oxa.pipeline.stages  # noqa: F401  (registers the shipped kinds)

    if name in _KINDS:
        return _KINDS[name]
    module, colon, attr = name.partition(":")
    if colon:
        try:
            kind = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise OxaError(f"{where}: kind {name!r}: {e}") from None
        if isinstance(kind, StageKind):
            return kind
        raise OxaError(f"{where}: kind {name!r} is not a stage kind (decorate it with oxa.pipeline.stage_kind)")
    raise OxaError(f"{where}: unknown kind {name!r}; the kinds are: {', '.join(sorted(_KINDS))}, or module:attr")
