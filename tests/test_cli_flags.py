"""The command line derived from the settings models (oxa.commands.flags), checked on every real command."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal, Optional

import pytest
import typer
import yaml
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from oxa.cli import app
from oxa.commands.flags import StageCommand, stage_command
from oxa.config import StageConfig, cli
from oxa.errors import OxaError

COMMANDS = {name: cmd for name, cmd in typer.main.get_group(app).commands.items() if isinstance(cmd, StageCommand)}


def _optional_model(annotation) -> type[BaseModel] | None:
    """The model class in ``Model`` or ``Model | None``, else None."""
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def leaf_defaults(model: type[BaseModel]) -> dict[str, object]:
    """Dotted name -> default of every leaf setting, read from pydantic's own defaults (``model_construct``);
    a required setting maps to None; an unset optional section contributes its model's defaults."""
    out: dict[str, object] = {}

    def walk(cls: type[BaseModel], instance: BaseModel, prefix: str) -> None:
        for name, field in cls.model_fields.items():
            value = getattr(instance, name, None)
            nested = _optional_model(field.annotation)
            if nested is not None:
                walk(nested, value if value is not None else nested.model_construct(), f"{prefix}{name}.")
            else:
                out[prefix + name] = value

    walk(model, model.model_construct(), "")
    return out


def test_every_command_is_derived_from_its_model():
    assert set(COMMANDS) == {"verify", "score", "select", "synth", "demo", "train", "generate", "distill", "eval",
                             "rl", "steps", "report", "run"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_setting_has_a_flag_whose_default_is_the_model_default(name):
    cmd = COMMANDS[name]
    params = {p.name: p for p in cmd.derived.params}
    flags = {f.key: f for f in cmd.flags if not f.option}
    expected = leaf_defaults(cmd.model)
    assert set(flags) == set(expected), "every leaf setting has exactly one flag"
    for key, default in expected.items():
        param = params[flags[key].param]
        shown = param.default
        if flags[key].kind[1]:  # a YAML-valued flag shows its default as YAML text
            shown = yaml.safe_load(shown) if shown is not None else None
        elif isinstance(shown, tuple):
            shown = list(shown)
        assert shown == default, f"oxa {name} {flags[key].name}: flag default {shown!r} != model default {default!r}"
        assert param.help and param.help.strip(), f"oxa {name} {flags[key].name} has no help (give the field a description)"
    assert "config" in params


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_renders_with_every_flag_and_its_description(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for f in COMMANDS[name].flags:
        if not f.meta.get("positional"):
            assert f.name in text, f.name
        first_words = " ".join((f.field.description or "").split()[:3])
        assert first_words[1:] in text, (f.key, first_words)  # [1:]: the first letter is capitalised


def _capture(monkeypatch, module: str, attr: str, result=None) -> list:
    """Replace the library function a command calls; return the list of settings it receives."""
    import importlib

    seen: list = []
    monkeypatch.setattr(importlib.import_module(module), attr, lambda cfg, *a, **k: seen.append(cfg) or result)
    return seen


def test_dotted_flags_set_nested_settings(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "oxa.distill", "distill", Path("ul_set.jsonl"))
    result = CliRunner().invoke(app, ["distill", "t.jsonl", "-m", "base", "-o", str(tmp_path), "--sampling.n", "3",
                                      "--sampling.stop", "a", "--sampling.stop", "b", "--sampling.prompt.suffix", "",
                                      "--train", "{max_steps: 2, learning_rate: 1.0e-3}", "--no-progress"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert cfg.sampling.n == 3 and cfg.sampling.max_new_tokens == 4096  # the rest of the section keeps its defaults
    assert cfg.sampling.stop == ["a", "b"] and cfg.sampling.prompt.suffix == "" and cfg.progress is False
    assert cfg.train == {"max_steps": 2, "learning_rate": 1e-3} and cfg.output == tmp_path

    seen = _capture(monkeypatch, "oxa.pipeline.run", "run_config", {"seconds": 0.0})
    result = CliRunner().invoke(app, ["run", "demo", "--profile", "quick", "--from", "score", "--only", "a", "--only",
                                      "b", "--set", "vars.seed=1", "--set", "train_sft.alpha=0", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.recipe, cfg.profile, cfg.from_stage, cfg.only) == ("demo", "quick", "score", ["a", "b"])
    assert cfg.overrides == ["vars.seed=1", "train_sft.alpha=0"] and cfg.out == tmp_path and cfg.force is False

    seen = _capture(monkeypatch, "oxa.scoring", "score_file")
    result = CliRunner().invoke(app, ["score", "in.jsonl", "-o", "out.jsonl", "-m", "model", "--fields.query", "question",
                                      "--answer-field", "gold", "--prompt.suffix", "", "--no-prompt.template",
                                      "--prompt.chat-template", "{{ messages[0]['content'] }}"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.input, cfg.output, cfg.model) == (Path("in.jsonl"), Path("out.jsonl"), "model")
    assert (cfg.fields.query, cfg.fields.answer, cfg.fields.response) == ("question", "gold", "response")
    assert (cfg.prompt.suffix, cfg.prompt.template, cfg.prompt.chat_template) == ("", False, "{{ messages[0]['content'] }}")


def test_config_file_and_flags_resolve_with_the_right_priority(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "oxa.evaluation", "evaluate")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({"model": "from-file", "benchmarks": ["aime24", "gsm8k"], "output": "out",
                                   "temperature": 0.7, "top_p": 0.9, "stop": ["a"], "prompt": {"suffix": " S."},
                                   "progress": False}))
    runner = CliRunner()
    assert runner.invoke(app, ["eval", "--config", str(cfg)]).exit_code == 0
    assert runner.invoke(app, ["eval", "math500", "-c", str(cfg), "-m", "flag", "--top-p", "0.5", "--stop", "b",
                               "--stop", "c", "--prompt.system", "Be brief.", "--progress"]).exit_code == 0
    file_only, flagged = seen
    assert (file_only.model, file_only.benchmarks, file_only.temperature) == ("from-file", ["aime24", "gsm8k"], 0.7)
    assert (file_only.top_p, file_only.stop, file_only.prompt.suffix, file_only.progress) == (0.9, ["a"], " S.", False)
    # flags win where given (positional, alias, repeatable list, nested, bool); the file everywhere else
    assert (flagged.model, flagged.benchmarks, flagged.top_p, flagged.stop) == ("flag", ["math500"], 0.5, ["b", "c"])
    assert (flagged.temperature, flagged.prompt.suffix, flagged.prompt.system) == (0.7, " S.", "Be brief.")
    assert flagged.progress is True and file_only.seed == flagged.seed == 0


def test_bad_settings_are_one_line_errors_naming_their_source(tmp_path, capsys):
    from oxa.cli import main

    cfg = tmp_path / "t.yaml"
    cfg.write_text("model: m\noutput_dir: o\nce_data: c.jsonl\nalpah: 0.1\n")
    for args, message in [
        (["train", "-c", str(cfg)], f"{cfg}:4: alpah: Extra inputs are not permitted"),
        (["train", "-c", str(cfg).replace("t.yaml", "u.yaml")], "u.yaml: config file not found"),
        (["train", "-o", "o", "--ce-data", "c.jsonl", "--alpha", "-1"],
         "model: Field required (give --model or set `model` in a --config file); --alpha: Input should be greater than"),
        (["train", "-m", "m", "-o", "o", "--ce-data", "c", "--model-overrides", "{a: [1"], "--model-overrides: invalid YAML"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
        err = " ".join(capsys.readouterr().err.split())
        assert message in err, err


def test_train_export_is_an_option_model_not_a_setting(monkeypatch, tmp_path):
    import oxa.commands.train

    seen: list = []
    monkeypatch.setattr(oxa.commands.train, "_export", lambda cfg, kind, path: seen.append((cfg.alpha, kind, path)))
    result = CliRunner().invoke(app, ["train", "-m", "m", "-o", str(tmp_path), "--ce-data", "c.jsonl", "--alpha", "0.5",
                                      "--export", "trl", "--export-path", "x.jsonl"])
    assert result.exit_code == 0, result.output
    assert seen == [(0.5, "trl", Path("x.jsonl"))]
    bad = CliRunner().invoke(app, ["train", "-m", "m", "-o", "o", "--ce-data", "c", "--export", "csv"])
    assert bad.exit_code == 2 and "csv" in bad.output
    cfg = tmp_path / "t.yaml"
    cfg.write_text("model: m\noutput_dir: o\nce_data: c\nexport: trl\n")  # not a key of the config file
    with pytest.raises(OxaError, match="export: Extra inputs are not permitted"):
        CliRunner().invoke(app, ["train", "-c", str(cfg)], catch_exceptions=False)


def test_a_new_command_is_a_few_lines(tmp_path):
    """What the lead writes to add `oxa rl`, `oxa steps`, `oxa run`: a model, a function, one decorator."""

    class Inner(BaseModel):
        """A nested section."""

        depth: int = Field(3, description="how deep")

    class ToyConfig(StageConfig):
        data: Path = Field(description="input records", json_schema_extra=cli(positional=True))
        model: str = Field("base", description="which model", json_schema_extra=cli("-m"))
        kind: Literal["a", "b"] = Field("a", description="which kind")
        tags: list[str] = Field(default_factory=list, description="tags (repeatable)")
        limit: Optional[int] = Field(None, description="at most this many", json_schema_extra=cli(section="Limits"))
        inner: Inner = Inner()

    class Extra(BaseModel):
        dry_run: bool = Field(False, description="only say what would run")

    toy = typer.Typer()
    seen: list = []

    @stage_command(toy, "toy", ToyConfig, options=Extra)
    def run_toy(cfg: ToyConfig, extra: Extra) -> None:
        """Run the toy stage."""
        seen.append((cfg, extra))

    @toy.command()
    def other() -> None:  # a second command, so that typer builds a group
        pass

    result = CliRunner().invoke(toy, ["toy", "d.jsonl", "-m", "big", "--kind", "b", "--tags", "x", "--inner.depth", "5",
                                      "--limit", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert seen == [(ToyConfig(data=Path("d.jsonl"), model="big", kind="b", tags=["x"], limit=2, inner=Inner(depth=5)),
                     Extra(dry_run=True))]
    text = CliRunner().invoke(toy, ["toy", "--help"], env={"COLUMNS": "200"}).output
    assert "Run the toy stage." in text and "Limits" in text and "inner: A nested section." in text
    assert "--inner.depth" in text and "[default: 3]" in text and "--no-dry-run" in text
