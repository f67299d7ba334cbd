"""Recipes: the models, the data and the stages of one OXA run, in one YAML file.

A stage names its kind (``verify``, ``score``, ``train``, ...) and gives that command's settings, the same
pydantic model ``oxa <command> --help`` documents, less the output setting, which the engine fills with
the stage's place in the run directory. Settings refer to the recipe's values and to earlier stages::

    "${models.base}"  "${data.teacher}"  "${vars.seed}"   a value of the recipe (a whole-string reference keeps
                                                          the value's type: "${vars.seed}" is the int)
    "${verify}"  "${world}/rl.jsonl"                    what an earlier stage produced, or a path inside it

Top-level keys named ``x-...`` are ignored: they hold YAML anchors that stages merge (``<<: *train``).
A stage that refers to another runs after it and is redone when it changes. Profiles (``--profile quick``)
and ``--set KEY=VALUE`` overrides change the recipe before any of this: ``vars.seed=3``, ``models.base=DIR``,
``launcher=...``, ``STAGE.SETTING=...`` (``train_sft.gce.beta=0``) or ``STAGE.launcher=...``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from oxa.config import StageConfig, load_yaml, validate
from oxa.errors import OxaError
from oxa.pipeline.kinds import StageKind, get_kind

REF = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")
VALUE_SECTIONS = ("vars", "models", "data")
TOP_LEVEL = ("description", "launcher", *VALUE_SECTIONS)


class StageSpec(StageConfig):
    """One stage of a recipe."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", description="unique name; its directory in the run")
    kind: str = Field(description="verify, score, select, distill, train, rl, eval, report, ... or module:attr")
    settings: dict[str, Any] = Field(default_factory=dict, description="the command's settings, less its output")
    launcher: str | None = Field(None, description="run the stage's command under this (torchrun ...); "
                                                   "overrides the recipe's")


class Recipe(StageConfig):
    """A whole run: values referred to as ${vars.X}, ${models.X}, ${data.X}; the stages in order."""

    description: str = ""
    vars: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, str | None] = Field(default_factory=dict)
    data: dict[str, str | None] = Field(default_factory=dict)
    launcher: str | None = None
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(min_length=1)


def shipped_recipes() -> dict[str, Any]:
    """Name -> file of the recipes shipped in ``oxa/recipes``."""
    folder = resources.files("oxa") / "recipes"
    return {p.name.removesuffix(".yaml"): p for p in folder.iterdir() if p.name.endswith(".yaml")}


def recipe_source(spec: str | Path) -> tuple[str, dict[str, Any]]:
    """(where it came from, the raw mapping) of a recipe file or a shipped recipe's name."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return str(path), load_yaml(path)
    shipped = shipped_recipes()
    if str(spec) not in shipped:
        raise OxaError(f"{spec}: neither a recipe file nor a shipped recipe ({', '.join(sorted(shipped))})")
    text = shipped[str(spec)].read_text(encoding="utf-8")
    return f"recipe {spec}", yaml.safe_load(text) or {}


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, YAML value)."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise OxaError(f"--set {text!r}: expected KEY=VALUE (models.base=DIR, STAGE.SETTING=VALUE)")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise OxaError(f"--set {text!r}: invalid YAML value: {e}") from None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], *, source: str) -> dict[str, Any]:
    """A copy of the raw recipe with dotted overrides applied (see the module docstring)."""
    raw = copy.deepcopy(raw)
    stages = {s.get("name"): s for s in raw.get("stages") or [] if isinstance(s, dict)}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head in TOP_LEVEL:
            target, path = raw, key.split(".")
        elif head in stages:
            if not rest:
                raise OxaError(f"{source}: override {key!r}: say which setting (STAGE.SETTING=VALUE)")
            target = stages[head]
            path = ["launcher"] if rest == "launcher" else ["settings", *rest.split(".")]
        else:
            raise OxaError(f"{source}: override {key!r}: {head!r} is neither {', '.join(TOP_LEVEL)} nor a stage "
                           f"({', '.join(stages)})")
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = value
    return raw


@dataclass
class PlannedStage:
    """A stage ready to run: its kind, its validated settings, the stages it reads, where it writes."""

    spec: StageSpec
    kind: StageKind
    settings: BaseModel
    template: dict[str, Any]  # the settings with stage references unresolved: hashed into the key
    after: tuple[str, ...]
    inputs: dict[str, str]  # referenced stage -> its output
    dir: Path
    output: Path
    launcher: str | None


def load_recipe(spec: str | Path, *, profile: str | None = None, overrides: list[str] | None = None
                ) -> tuple[Recipe, str]:
    """The recipe ``spec`` (file or shipped name) with a profile and ``--set`` overrides applied."""
    source, raw = recipe_source(spec)
    # x-NAME keys hold YAML anchors; the JSON round trip unshares what aliases share (`prompt: *prompt` in
    # every stage), so that an override of one stage's setting changes that stage only
    raw = json.loads(json.dumps({k: v for k, v in raw.items() if not str(k).startswith("x-")}, default=str))
    profiles = raw.get("profiles") or {}
    if profile is not None:
        if profile not in profiles:
            raise OxaError(f"{source}: no profile {profile!r} (profiles: {', '.join(profiles) or 'none'})")
        raw = apply_overrides(raw, profiles[profile], source=f"{source}: profile {profile}")
    raw = apply_overrides(raw, dict(parse_override(o) for o in overrides or []), source=source)
    return validate(Recipe, raw, source=source), source


def plan(recipe: Recipe, out: Path, *, source: str = "recipe") -> list[PlannedStage]:
    """Resolve every stage's references and validate its settings, before anything runs."""
    out = Path(out).resolve()
    planned: dict[str, PlannedStage] = {}
    values = {section: getattr(recipe, section) for section in VALUE_SECTIONS}
    for spec in recipe.stages:
        where = f"{source}: stage {spec.name}"
        if spec.name in planned:
            raise OxaError(f"{where}: a second stage of that name")
        kind = get_kind(spec.kind, where=where)
        stage_dir = out / spec.name
        fill = kind.fill_value(stage_dir, spec.name)
        if kind.output_field and kind.output_field in spec.settings:
            raise OxaError(f"{where}: `{kind.output_field}` is set by the engine ({fill}); leave it out")
        after: list[str] = []

        def value_of(ref: str, *, template: bool) -> Any:
            head, _, rest = ref.partition(".")
            if head in VALUE_SECTIONS:
                if rest not in values[head]:
                    raise OxaError(f"{where}: ${{{ref}}}: the recipe has no {head} entry {rest!r}")
                if values[head][rest] is None and head != "vars":
                    raise OxaError(f"{where}: ${{{ref}}} is not set; give it: oxa run ... --set {ref}=VALUE")
                return values[head][rest]
            if head not in planned or rest:
                known = ", ".join(planned) or "none yet"
                raise OxaError(f"{where}: ${{{ref}}} is neither vars./models./data. nor an earlier stage ({known})")
            if head not in after:
                after.append(head)
            return f"${{{head}}}" if template else str(planned[head].output)

        def substitute(node: Any, template: bool) -> Any:
            if isinstance(node, dict):
                return {k: substitute(v, template) for k, v in node.items()}
            if isinstance(node, list):
                return [substitute(v, template) for v in node]
            if not isinstance(node, str):
                return node
            whole = REF.fullmatch(node)
            if whole:
                return value_of(whole.group(1), template=template)
            return REF.sub(lambda m: str(value_of(m.group(1), template=template)), node)

        resolved = substitute(spec.settings, False)
        template = substitute(spec.settings, True)
        if kind.output_field:
            resolved[kind.output_field] = str(fill)
        settings = validate(kind.model, resolved, source=where)
        inputs = {name: str(planned[name].output) for name in after}
        launcher = spec.launcher if spec.launcher is not None else recipe.launcher
        if launcher is not None:
            launcher = str(substitute(launcher, False) or "").strip() or None  # "${vars.launcher}", "" for none
        planned[spec.name] = PlannedStage(spec, kind, settings, template, tuple(after), inputs, stage_dir,
                                          kind.output_path(settings, stage_dir, spec.name), launcher)
    return list(planned.values())
