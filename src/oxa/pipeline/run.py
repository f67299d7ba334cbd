"""``oxa run RECIPE``: a recipe's stages as engine steps, each in this process or under a launcher.

A stage with a launcher (``torchrun --nproc_per_node 8``, ``accelerate launch --config_file F``,
``srun ... torchrun ...``) has its settings written to ``RUN_DIR/<stage>/settings.yaml`` and runs as
``<launcher> -m oxa.cli <command> --config RUN_DIR/<stage>/settings.yaml``; every other stage runs in
this process. Environment variables in a launcher (``$MASTER_ADDR``) are expanded.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.errors import OxaError
from oxa.io import write_text
from oxa.pipeline.engine import Step, run_steps
from oxa.pipeline.kinds import StageContext
from oxa.pipeline.recipe import PlannedStage, Recipe, load_recipe, plan


class RunSettings(StageConfig):
    """How a recipe runs: where, which part of it, with which changes (shared by ``oxa run`` and ``oxa demo``)."""

    out: Path | None = Field(None, description="run directory (manifest.json, one directory per stage); default "
                             "runs/<recipe>", json_schema_extra=cli("-o"))
    from_stage: str | None = Field(None, description="redo this stage and every later one",
                                   json_schema_extra=cli("--from"))
    only: list[str] = Field(default_factory=list, description="redo only this stage (repeatable); the stages it "
                            "reads must have finished")
    overrides: list[str] = Field(default_factory=list, description="change the recipe: KEY=VALUE, e.g. "
                                 "models.base=DIR, vars.seed=1, train_sft.learning_rate=1e-5 (repeatable)",
                                 json_schema_extra=cli("--set"))
    force: bool = Field(False, description="redo every stage even if its outputs are up to date")


class RunConfig(RunSettings):
    """Settings of ``oxa run``."""

    recipe: str = Field(description="a recipe file, or the name of a shipped one (demo, paper-qwen2.5-math-1.5b, "
                        "paper-qwen2.5-math-7b, smollm2-gsm8k)", json_schema_extra=cli(positional=True))
    profile: str | None = Field(None, description="apply the recipe's profile of this name first (e.g. quick)")


def recipe_steps(stages: list[PlannedStage], run_dir: Path, log: Callable[[str], None]) -> list[Step]:
    """Engine steps of planned recipe stages; a step's key covers the stage's kind, settings and upstream."""
    return [Step(s.spec.name, _work(s, run_dir, log), settings={"kind": s.spec.kind, "settings": s.template},
                 after=s.after, outputs=(str(s.output),), workdir=str(s.dir),
                 info={"kind": s.spec.kind, "settings": s.settings.model_dump(mode="json"), "inputs": s.inputs,
                       "output": str(s.output), **({"launcher": s.launcher} if s.launcher else {})})
            for s in stages]


def _work(stage: PlannedStage, run_dir: Path, log: Callable[[str], None]) -> Callable[[], dict[str, Any]]:
    def work() -> dict[str, Any]:
        ctx = StageContext(stage.spec.name, stage.dir, run_dir, log)
        if stage.launcher and stage.launcher.strip():
            launch(stage, log)
            ctx = replace(ctx, launched=True)
        return stage.kind(stage.settings, ctx)

    return work


def launch(stage: PlannedStage, log: Callable[[str], None]) -> None:
    """Run the stage's ``oxa`` command under its launcher, its settings in a YAML file."""
    if not stage.kind.command:
        raise OxaError(f"kind {stage.kind.name!r} has no oxa command to run under a launcher; drop its launcher")
    settings_file = stage.dir / "settings.yaml"
    write_text(settings_file, yaml.safe_dump(stage.settings.model_dump(mode="json"), sort_keys=False))
    argv = [*shlex.split(os.path.expandvars(stage.launcher or "")), "-m", "oxa.cli", stage.kind.command,
            "--config", str(settings_file)]
    log(f"  $ {shlex.join(argv)}")
    try:
        status = subprocess.run(argv).returncode
    except FileNotFoundError as e:
        raise OxaError(f"launcher {stage.launcher!r}: {e.strerror}: {e.filename}") from None
    if status != 0:
        raise OxaError(f"`{shlex.join(argv)}` exited with status {status}")


def run_recipe(recipe: Recipe, out: Path, *, source: str = "recipe", from_stage: str | None = None,
               only: list[str] | None = None, force: bool = False, header: dict[str, Any] | None = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan (validate every stage) and run the recipe in ``out``; returns the manifest."""
    out = Path(out).resolve()
    stages = plan(recipe, out, source=source)
    steps = recipe_steps(stages, out, log)
    head = {"recipe": source, "description": recipe.description, **(header or {})}
    return run_steps(steps, out, from_step=from_stage, only=only or [], force=force, header=head, log=log)


def run_config(cfg: RunConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """What ``oxa run`` does."""
    recipe, source = load_recipe(cfg.recipe, profile=cfg.profile, overrides=cfg.overrides)
    out = cfg.out or Path("runs") / Path(cfg.recipe).name.removesuffix(".yaml").removesuffix(".yml")
    header = {"profile": cfg.profile, "overrides": cfg.overrides}
    return run_recipe(recipe, out, source=source, from_stage=cfg.from_stage, only=cfg.only, force=cfg.force,
                      header=header, log=log)
