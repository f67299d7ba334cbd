"""Stage settings as pydantic models, read from YAML and overlaid by command-line flags.

Every command accepts ``--config FILE``. A value comes from, in rising priority: the model's default,
the YAML file, a flag given on the command line. Unknown keys and wrong types are errors that name the
file and the key, so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from oxa.errors import OxaError

C = TypeVar("C", bound=BaseModel)


class StageConfig(BaseModel):
    """Base of every stage's settings: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OxaError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise OxaError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OxaError(f"{path}: a config file must be a mapping of settings, got {type(data).__name__}")
    return data


def validate(cls: type[C], data: dict[str, Any], *, source: str) -> C:
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors(include_url=False)
        )
        raise OxaError(f"{source}: invalid settings: {problems}") from None


def resolve(cls: type[C], config: Path | None, flags: dict[str, Any], *, section: str | None = None) -> C:
    """Build ``cls`` from ``config`` (optionally one ``section`` of it) overlaid by explicitly given flags.

    ``flags`` maps setting names to the values the command received. A flag counts as given when the
    click context reports it came from the command line or the environment, not from its default, so a
    default flag value never overrides the config file. Dotted names (``fields.query``) set nested values.
    The command's parameter for setting ``a.b`` must be named ``a_b``: that is how its source is found,
    and a mismatch raises at once rather than silently letting the config file win.
    """
    data: dict[str, Any] = {}
    source = "command line"
    if config is not None:
        data = load_yaml(config)
        if section is not None:
            data = data.get(section, {}) or {}
        source = str(config)
    ctx = _current_context()
    for name, value in flags.items():
        param = name.replace(".", "_")
        given = True
        if ctx is not None:
            if param not in ctx.params:
                raise ValueError(f"setting {name!r} needs a command parameter named {param!r} (got {sorted(ctx.params)})")
            src = ctx.get_parameter_source(param)
            given = src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")
        if not given and config is not None:
            continue
        if value is None and not given:
            continue
        _set_dotted(data, name, value)
    return validate(cls, data, source=source)


def _current_context():
    """The running command's context (typer vendors its own click), or None outside a command."""
    for module in ("typer._click.globals", "click.globals"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except ImportError:
            continue
        if ctx is not None:
            return ctx
    return None


def _set_dotted(data: dict[str, Any], name: str, value: Any) -> None:
    *parents, leaf = name.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value
