"""Stage settings as pydantic models, read from YAML and overlaid by command-line flags.

Each setting is declared once, as a field of its stage's model (type, default, ``description=``); the
command-line flags are derived from those fields (:mod:`oxa.commands.flags`). Every command accepts
``--config FILE``. A value comes from, in rising priority: the model's default, the YAML file, a flag
given on the command line. Unknown keys and wrong types are errors that name the file, the line and the
key (or the flag), so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from oxa.errors import OxaError

C = TypeVar("C", bound=BaseModel)


class StageConfig(BaseModel):
    """Base of every stage's settings: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def cli(*aliases: str, positional: bool = False, default_text: str | None = None,
        section: str | None = None) -> dict[str, Any]:
    """Command-line metadata of a settings field: ``Field(..., json_schema_extra=cli("-m"))``.

    ``aliases`` are further names of the field's flag (``"-m"``, ``"--lr"``); ``positional`` makes it an
    argument instead of a flag (a list field then takes any number of them); ``default_text`` is what
    ``--help`` shows in place of a default too long to print; ``section`` starts a panel of ``--help``
    that holds this field's flag and those of the fields after it, up to the next section.
    """
    meta: dict[str, Any] = {"aliases": list(aliases), "positional": positional, "default_text": default_text,
                            "section": section}
    return {"cli": {k: v for k, v in meta.items() if v}}


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
    """``cls`` from ``data``, or an :class:`OxaError` naming ``source`` and every bad key."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{_dotted(err['loc']) or '(top)'}: {err['msg']}" for err in e.errors(include_url=False))
        raise OxaError(f"{source}: invalid settings: {problems}") from None


def resolve(cls: type[C], config: str | Path | None, given: Mapping[str, Any] | None = None, *,
            flag_names: Mapping[str, str] | None = None) -> C:
    """``cls`` from the YAML file ``config`` (if any) overlaid by ``given`` settings.

    ``given`` maps dotted setting names (``alpha``, ``fields.query``) to the values of the flags that were
    given on the command line, and only those: a flag left out never overrides the file. An error names
    each bad setting where it came from: the flag (``flag_names`` maps a setting to its flag), or the
    file and line, or, for a missing required setting, both ways to give it.
    """
    given, flag_names = dict(given or {}), dict(flag_names or {})
    data = load_yaml(config) if config is not None else {}
    for key, value in given.items():
        _set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = _key_lines(config) if config is not None else {}
        problems = [_blame(err, given, flag_names, config, lines) for err in e.errors(include_url=False)]
        raise OxaError("invalid settings: " + "; ".join(problems)) from None


def _blame(err: dict, given: dict[str, Any], flag_names: dict[str, str], config, lines: dict[str, int]) -> str:
    key, msg = _dotted(err["loc"]), err["msg"]
    flag_key = next((k for k in given if key == k or key.startswith(k + ".")), None)
    if flag_key is not None:
        return f"{flag_names.get(flag_key, flag_key)}: {msg}"
    where = next((k for k in sorted(lines, key=len, reverse=True) if key == k or key.startswith(k + ".")), None)
    if where is not None:
        return f"{config}:{lines[where]}: {key}: {msg}"
    if err["type"] == "missing":
        ways = f"give {flag_names[key]} or set" if key in flag_names else "set"
        return f"{key}: {msg} ({ways} `{key}` in a --config file)"
    return f"{config or 'settings'}: {key or '(top)'}: {msg}"


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _key_lines(path: str | Path) -> dict[str, int]:
    """Dotted key -> line number, for every key of the mappings in a YAML file (for error messages)."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    walk(yaml.compose(Path(path).read_text(encoding="utf-8")), "")
    return lines


def _set_dotted(data: dict[str, Any], name: str, value: Any) -> None:
    *parents, leaf = name.split(".")
    for p in parents:
        if not isinstance(data.get(p), dict):  # absent, or null in the file (an unset optional section)
            data[p] = {}
        data = data[p]
    data[leaf] = value
