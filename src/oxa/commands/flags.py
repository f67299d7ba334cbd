"""Command-line flags derived from settings models, so that each setting is declared once.

A stage's command is a function that receives its settings model, built from ``--config FILE`` and the
flags (``oxa.config.resolve``: a flag given overrides the file, a flag left out never does). Registering
a new command takes a few lines in ``oxa/commands/<name>.py``::

    from oxa.commands.flags import stage_command

    def register(app: typer.Typer) -> None:
        @stage_command(app, "rl", "oxa.rl.config:RLConfig")
        def rl(cfg) -> None:
            \"\"\"Train with GRPO on verifiable rewards.\"\"\"   # its first line is the summary in `oxa --help`
            from oxa.rl.trainer import train_rl
            train_rl(cfg)

and the module's name in the list in ``oxa/cli.py``. The settings are a model class or a ``"module:Class"``
string; the string defers importing the module until the command runs or shows its help, which keeps
``oxa --help`` fast. ``options=Model`` adds flags that are not settings of the stage (``oxa train
--export``): they are never read from the config file, and the function receives ``(cfg, options)``.

How a field of the model becomes a flag:

* ``--kebab-case`` of its name; the help is its ``description``; ``--help`` shows its default;
* ``bool``: ``--x/--no-x``; ``list[...]``: a repeatable flag (``--stop A --stop B``); a dict or any
  other compound type: a YAML value (``--model-overrides '{rope_theta: 1.0e6}'``);
* a nested settings model gives one dotted flag per field (``--fields.query``, ``--prompt.suffix``,
  ``oxa demo --train.alpha 1e-4``), grouped in a help panel of their own;
* a setting without a default is marked ``[required]``: give it as a flag or in the config file;
* ``Field(..., json_schema_extra=oxa.config.cli(...))`` adds aliases (``"-m"``, ``"--lr"``), makes the
  field a positional argument, replaces a long default in ``--help`` with a short text, or starts a
  ``section`` of the help (a panel for this flag and those after it).

Typer renders the help and parses the values: :class:`StageCommand` hands it a function whose signature
lists one ``Annotated[type, typer.Option(...)]`` parameter per flag, and builds the settings from the
flags whose value came from the command line.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.markup import escape
from typer.core import TyperCommand

from oxa.config import resolve, validate
from oxa.errors import OxaError

_SCALARS = (bool, int, float, str, Path)
_RESERVED = {"ctx", "config", "--config", "-c", "--help"}  # every command's own parameters


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity (a default may be a dict)
class Flag:
    """One leaf setting (``path`` = ``("fields", "query")``) as a command-line parameter."""

    path: tuple[str, ...]
    field: FieldInfo
    default: Any  # the model's default (None for a required setting)
    panel: str | None  # help panel of a nested model's flags
    option: bool = False  # from the options model, not a setting of the stage

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def param(self) -> str:
        return "__".join(self.path)

    @property
    def meta(self) -> dict[str, Any]:
        return _cli_meta(self.field)

    @property
    def name(self) -> str:
        return "--" + ".".join(p.replace("_", "-") for p in self.path)

    @property
    def shown_as(self) -> str:
        """How an error message names it: the flag, or a positional argument's metavar."""
        return self.path[-1].upper() if self.meta.get("positional") else self.name

    @property
    def required(self) -> bool:
        return self.field.is_required()

    @cached_property
    def kind(self) -> tuple[Any, bool]:
        """The type typer parses the value as, and whether the value is YAML text."""
        t = _strip_optional(self.field.annotation)
        if _scalar(t):
            return t, False
        if typing.get_origin(t) is list and _scalar(_strip_optional(typing.get_args(t)[0])):
            return list[_strip_optional(typing.get_args(t)[0])], False
        return str, True

    def parameter(self) -> inspect.Parameter:
        """The typer parameter: ``Annotated[type, typer.Option(...)]`` with the model's default."""
        t, is_yaml = self.kind
        help_text = escape(_sentence(self.field.description or ""))
        if self.required:
            help_text += " [bold]\\[required][/]"
        shown = self.meta.get("default_text", True)
        if self.meta.get("positional"):
            info = typer.Argument(help=help_text, metavar=self.shown_as, show_default=False)
        elif t is bool:
            info = typer.Option(f"{self.name}/--no-{self.name[2:]}", *self.meta.get("aliases", ()), help=help_text,
                                rich_help_panel=self.panel)
        else:
            if typing.get_origin(t) is Literal:  # the choices go in the help, where they wrap
                help_text += f" [dim]\\[choices: {', '.join(map(str, typing.get_args(t)))}][/]"
            info = typer.Option(self.name, *self.meta.get("aliases", ()), help=help_text, show_default=shown,
                                metavar=_metavar(t, is_yaml), rich_help_panel=self.panel)
        default = _yaml_text(self.default) if is_yaml and self.default is not None else self.default
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[Optional[t], info])

    def parse(self, value: Any) -> Any:
        """The value of a given flag as the setting's value (YAML text parsed)."""
        if not self.kind[1]:
            return list(value) if isinstance(value, (list, tuple)) else value
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise OxaError(f"{self.name}: invalid YAML value: {e}") from None


def settings_flags(model: type[BaseModel], *, option: bool = False) -> list[Flag]:
    """Every leaf setting of ``model`` as a :class:`Flag`, nested models expanded to dotted flags."""
    return list(_walk(model, model.model_construct(), (), None, option))


def _walk(model: type[BaseModel], defaults: BaseModel, prefix: tuple[str, ...], panel: str | None, option: bool):
    for name, field in model.model_fields.items():
        path = prefix + (name,)
        value = getattr(defaults, name, None)  # model_construct() leaves required settings unset
        if not prefix:  # sections divide a command's own settings; a nested model keeps its panel
            panel = _cli_meta(field).get("section", panel)
        nested = _strip_optional(field.annotation)
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            title = field.description or (inspect.getdoc(nested) or "").split("\n")[0]
            sub = value if isinstance(value, BaseModel) else nested.model_construct()
            yield from _walk(nested, sub, path, f"{'.'.join(path)}: {title}", option)
        else:
            yield Flag(path, field, value, panel, option)


class StageCommand(TyperCommand):
    """``oxa NAME``: parameters are derived from the settings when it runs or shows its help (not before)."""

    run: Callable[..., Any]
    settings: type[BaseModel] | str
    options: type[BaseModel] | None = None

    @cached_property
    def model(self) -> type[BaseModel]:
        if isinstance(self.settings, str):
            module, _, name = self.settings.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.settings

    @cached_property
    def flags(self) -> list[Flag]:
        flags = settings_flags(self.model) + (settings_flags(self.options, option=True) if self.options else [])
        seen: dict[str, str] = {}
        for f in flags:
            for name in (f.param, f.name, *f.meta.get("aliases", ())):
                if name in _RESERVED:
                    raise TypeError(f"oxa {self.name}: setting {f.key} takes the name {name!r}, which is reserved")
                if name in seen:
                    raise TypeError(f"oxa {self.name}: {name!r} names two settings, {seen[name]} and {f.key}")
                seen[name] = f.key
        return flags

    @cached_property
    def derived(self) -> TyperCommand:
        """The click command typer builds from a function whose signature lists the flags."""
        flags = self.flags

        def command(ctx: typer.Context, config: Optional[Path] = None, **values: Any) -> Any:
            given = {f: f.parse(values[f.param]) for f in flags
                     if ctx.get_parameter_source(f.param).name not in ("DEFAULT", "DEFAULT_MAP")}
            cfg = resolve(self.model, config, {f.key: v for f, v in given.items() if not f.option},
                          flag_names={f.key: f.shown_as for f in flags if not f.option})
            if self.options is None:
                return self.run(cfg)
            options = validate(self.options, {f.key: v for f, v in given.items() if f.option}, source="command line")
            return self.run(cfg, options)

        config = typer.Option("--config", "-c", show_default=False, help="YAML file of settings, keyed by the flags' "
                              "names with _ for - (nested: fields: {query: question}); flags given override it")
        params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
                  inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=Annotated[Optional[Path], config])]
        params += [f.parameter() for f in flags]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        app = typer.Typer(rich_markup_mode="rich", add_completion=False)
        app.command(self.name, help=self.help)(command)
        return typer.main.get_command(app)  # type: ignore[return-value]

    def get_params(self, ctx):  # click asks for the parameters both to parse and to show --help
        return self.derived.get_params(ctx)

    def invoke(self, ctx):
        return self.derived.invoke(ctx)


def stage_command(app: typer.Typer, name: str, settings: type[BaseModel] | str, *,
                  options: type[BaseModel] | None = None) -> Callable[[Callable], Callable]:
    """Decorator: register ``run(cfg)`` (or ``run(cfg, options)``) as ``oxa NAME``; its docstring is the help."""

    def register(run: Callable) -> Callable:
        cls = type(f"{name.title()}Command", (StageCommand,),
                   {"run": staticmethod(run), "settings": settings, "options": options})
        app.command(name, cls=cls, help=inspect.getdoc(run))(_placeholder)
        return run

    return register


def _placeholder() -> None:
    """Typer registers a command by a function; a :class:`StageCommand` runs ``run`` instead."""


def _cli_meta(field: FieldInfo) -> dict[str, Any]:
    """What ``oxa.config.cli`` put in the field's ``json_schema_extra``."""
    extra = field.json_schema_extra
    return extra.get("cli", {}) if isinstance(extra, dict) else {}


def _strip_optional(t: Any) -> Any:
    """``X`` for ``X | None``, ``Optional[X]`` or ``Annotated[X, constraint]``; anything else unchanged."""
    if typing.get_origin(t) is Annotated:
        return _strip_optional(typing.get_args(t)[0])
    if typing.get_origin(t) in (Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return _strip_optional(args[0])
    return t


def _metavar(t: Any, is_yaml: bool) -> str | None:
    if is_yaml:
        return "<yaml>"
    return "<choice>" if typing.get_origin(t) is Literal else None


def _scalar(t: Any) -> bool:
    return t in _SCALARS or typing.get_origin(t) is Literal


def _yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
