"""Settings from a YAML file overlaid by the flags that were given (oxa.config.resolve), and its errors."""

from pathlib import Path

import pytest
import yaml

from oxa.config import StageConfig, load_yaml, resolve, validate
from oxa.errors import OxaError
from oxa.prompting import PromptFormat
from oxa.records import Fields

ROOT = Path(__file__).resolve().parents[1]


class Toy(StageConfig):
    model: str
    n: int = 10
    mu: float = 2.5
    fields: Fields = Fields()
    prompt: PromptFormat = PromptFormat()


def test_file_is_overlaid_by_given_settings_only(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: m\nn: 50\nmu: 3.0\nfields:\n  query: problem\nprompt:\n  template: false\n  suffix: ' Go.'\n")
    got = resolve(Toy, cfg, {"n": 7, "prompt.suffix": ""})
    # given: n and prompt.suffix; from the file: mu, fields.query, prompt.template; defaults: the rest
    assert (got.n, got.mu, got.fields.query, got.fields.answer) == (7, 3.0, "problem", "answer")
    assert (got.prompt.template, got.prompt.suffix, got.prompt.system) == (False, "", None)
    assert resolve(Toy, None, {"model": "m", "fields.query": "q"}) == Toy(model="m", fields=Fields(query="q"))


def test_a_dotted_setting_fills_a_section_the_file_leaves_null(tmp_path):
    class WithOptional(StageConfig):
        section: Fields | None = None

    cfg = tmp_path / "c.yaml"
    cfg.write_text("section: null\n")
    assert resolve(WithOptional, cfg, {}).section is None
    assert resolve(WithOptional, cfg, {"section.query": "q"}).section == Fields(query="q")


def test_errors_name_the_file_line_and_key_or_the_flag(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: m\nn: 5\nfields:\n  querry: problem\n")
    with pytest.raises(OxaError, match=r"c.yaml:4: fields.querry: Extra inputs are not permitted"):
        resolve(Toy, cfg)
    cfg.write_text("model: m\nn: lots\n")
    with pytest.raises(OxaError, match=r"c.yaml:2: n: Input should be a valid integer"):
        resolve(Toy, cfg)
    # a bad value given as a flag is blamed on the flag, not on the file
    with pytest.raises(OxaError, match=r"--n: Input should be a valid integer") as e:
        resolve(Toy, cfg, {"n": "many"}, flag_names={"n": "--n"})
    assert "c.yaml" not in str(e.value)
    with pytest.raises(OxaError, match=r"model: Field required \(give -m/--model or set `model` in a --config file\)"):
        resolve(Toy, None, {}, flag_names={"model": "-m/--model"})
    cfg.write_text("- 1\n- 2\n")
    with pytest.raises(OxaError, match="must be a mapping"):
        resolve(Toy, cfg)
    with pytest.raises(OxaError, match="config file not found"):
        resolve(Toy, tmp_path / "missing.yaml")


def test_paper_prompt_is_one_section_shared_by_every_stage():
    """configs/paper/prompt.yaml is valid for every prompting stage and equals the training presets' prompt."""
    from oxa.distill import DistillConfig
    from oxa.evaluation import EvalConfig
    from oxa.generation import GenerateConfig
    from oxa.scoring import ScoreConfig
    from oxa.training import TrainConfig

    prompt = load_yaml(ROOT / "configs" / "paper" / "prompt.yaml")
    fmt = PromptFormat.model_validate(prompt["prompt"])
    assert "system" not in fmt.chat_template and fmt.chat_template.startswith("{% for message in messages %}")
    required = {"model": "m", "base_model": "m", "input": "i", "output": "o", "teacher": "t", "benchmarks": ["b"]}
    for cls in (ScoreConfig, GenerateConfig, EvalConfig, DistillConfig):
        data = {k: v for k, v in required.items() if k in cls.model_fields}
        assert validate(cls, {**data, **prompt}, source="prompt.yaml").prompt == fmt
    for preset in ("qwen2.5-math-1.5b", "qwen2.5-math-7b"):
        train = TrainConfig.model_validate(yaml.safe_load((ROOT / "configs" / "paper" / f"{preset}.yaml").read_text()))
        assert train.prompt == fmt
