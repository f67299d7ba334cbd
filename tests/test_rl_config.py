"""`oxa rl` settings: the presets hold the authors' values and each runs on a tiny model of its architecture;
settings a machine cannot run are refused in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from oxa.config import load_yaml, validate
from oxa.errors import OxaError
from oxa.io import read_records, write_records
from oxa.rl import RLConfig, train_rl
from oxa.rl.run import batch_geometry, check_backends, grpo_args

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"rl-qwen2.5-math-1.5b.yaml": (18432, 1600), "rl-qwen2.5-math-7b.yaml": (16384, 1200)}


def preset(name: str) -> RLConfig:
    path = ROOT / "configs" / name
    return validate(RLConfig, load_yaml(path), source=str(path))


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_hold_the_authors_settings(name):
    cfg = preset(f"paper/{name}")
    response, steps = PAPER[name]
    assert (cfg.num_generations, cfg.temperature, cfg.top_p, cfg.prompts_per_step, cfg.updates_per_rollout_batch) == \
        (8, 0.85, 1.0, 64, 1)
    assert (cfg.learning_rate, cfg.kl_coef, cfg.entropy_coef, cfg.max_grad_norm) == (2e-6, 0.001, 0.0, 1.0)
    assert (cfg.clip_ratio_low, cfg.clip_ratio_high, cfg.loss_aggregation, cfg.scale_rewards) == \
        (0.2, 0.2, "token-mean", "group")
    assert (cfg.max_prompt_length, cfg.max_response_length, cfg.max_steps) == (1536, response, steps)
    assert (cfg.prompts, cfg.policy_loss, cfg.lr_scheduler_type) == ("deepscaler", "vanilla", "constant")
    assert (cfg.eval.benchmarks, cfg.eval.n, cfg.eval.temperature, cfg.eval.top_p, cfg.eval.best_benchmark) == \
        (["aime24"], 8, 0.6, 0.95, "aime24")
    assert cfg.prompt.template and cfg.prompt.system is None  # the paper's suffix on every query


def parity_reward(completions, **kwargs):
    return [float(len(c) % 2) for c in completions]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*(f"paper/{n}" for n in sorted(PAPER)), "rl-synth.yaml"])
def test_each_preset_runs_on_a_tiny_model_of_its_architecture(name, tmp_path, tiny_model_dir):
    """The preset's objective, optimizer, prompt format and evaluation as they are; only the model, the sizes,
    the prompts (unfiltered: a random model solves none) and what needs a GPU (vLLM, DeepSpeed, bf16) are swapped."""
    cfg = preset(name)
    write_records(tmp_path / "p.jsonl", [{"id": f"q{i}", "query": f"What is {i} + 1?", "answer": str(i + 1)}
                                         for i in range(4)])
    small = cfg.model_copy(update={
        "model": str(tiny_model_dir), "output_dir": tmp_path / "out", "prompts": str(tmp_path / "p.jsonl"),
        "num_generations": 2, "prompts_per_step": 2, "micro_batch_size": 2, "max_response_length": 8, "max_steps": 1,
        "save_steps": None, "rollout_backend": "oxa",
        "prefilter": cfg.prefilter.model_copy(update={"enabled": False}), "deepspeed": None, "bf16": False, "report_to": ["none"],
        "eval": cfg.eval.model_copy(update={"benchmarks": [str(tmp_path / "p.jsonl")], "best_by": None, "n": 2,
                                            "limit": 2, "max_new_tokens": 8, "every": 1, "at_start": False}),
    })
    out = train_rl(small, reward_funcs=[parity_reward], log=lambda *_: None)
    rows = read_records(out / "rl_metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 1] and "eval/p/pass@1" in rows[0] and rows[1]["entropy"] > 0
    assert (out / "best" / "best.json").exists() and (out / "model.safetensors").exists()


def test_settings_this_machine_cannot_run_are_refused_in_one_line(tmp_path):
    base = dict(model="m", output_dir=tmp_path, prompts="p.jsonl")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(OxaError, match="rollout_backend vllm needs vLLM"):
            check_backends(RLConfig(**base, rollout_backend="vllm"))
    with pytest.raises(OxaError, match="no such file"):
        check_backends(RLConfig(**base, deepspeed=tmp_path / "missing.json"))
    with pytest.raises(OxaError, match="inside a rollout batch"):
        check_backends(RLConfig(**base, save_steps=3, updates_per_rollout_batch=2))
    with pytest.raises(OxaError, match="trl_args: trl.GRPOConfig has no setting 'vllm_sever_port'"):
        grpo_args(RLConfig(**base, trl_args={"vllm_sever_port": 8000}), 1)


def test_batch_geometry_follows_the_papers_batch_on_any_process_count(tmp_path):
    cfg = RLConfig(model="m", output_dir=tmp_path, prompts="p", micro_batch_size=4)  # 64 prompts x 8 rollouts
    assert batch_geometry(cfg, 8) == {"gradient_accumulation_steps": 16, "steps_per_generation": 16}
    assert batch_geometry(cfg, 1) == {"gradient_accumulation_steps": 128, "steps_per_generation": 128}
    two = cfg.model_copy(update={"updates_per_rollout_batch": 2})
    assert batch_geometry(two, 8) == {"gradient_accumulation_steps": 8, "steps_per_generation": 16}
    with pytest.raises(OxaError, match="whole groups"):
        batch_geometry(cfg, 3)
    with pytest.raises(OxaError, match="micro_batch_size"):
        batch_geometry(cfg.model_copy(update={"micro_batch_size": 48}), 1)


def test_a_config_typo_names_the_file_and_key(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("model: m\noutput_dir: out\nprompts: p\nkl_coeff: 0.1\n")
    with pytest.raises(OxaError, match=r"rl.yaml: invalid settings: kl_coeff"):
        validate(RLConfig, load_yaml(path), source=str(path))
    with pytest.raises(OxaError, match="best_by"):
        validate(RLConfig, {"model": "m", "output_dir": "o", "prompts": "p",
                            "eval": {"benchmarks": ["aime24"], "best_by": "aime25"}}, source="x")


def test_prompts_longer_than_max_prompt_length_are_dropped_and_counted(tmp_path, tiny_model_dir):
    from oxa.models import load_tokenizer
    from oxa.prompting import PromptFormat, encode_prompt
    from oxa.rl.run import prompt_rows

    tok = load_tokenizer(tiny_model_dir, padding_side="left")
    records = [{"id": "a", "query": "What is 1 + 1?", "answer": "2"},
               {"id": "b", "query": "What is 1 + 1? " * 40, "answer": ["2", "two"]},
               {"id": "c", "query": "What is 2 + 2?", "answer": "4"}]
    fits = len(encode_prompt(tok, "What is 1 + 1?", PromptFormat()))
    cfg = RLConfig(model=str(tiny_model_dir), output_dir=tmp_path, prompts="p", max_prompt_length=fits)
    rows, dropped = prompt_rows(records, tok, cfg)
    assert dropped == 1 and [(r["id"], r["prompt"], r["answer"]) for r in rows] == \
        [("a", "What is 1 + 1?", "2"), ("c", "What is 2 + 2?", "4")]
    rows, dropped = prompt_rows(records, tok, cfg.model_copy(update={"max_prompt_length": 4096}))
    assert dropped == 0 and [r["answer"] for r in rows] == [["2"], ["2", "two"], ["4"]]  # one Arrow type: lists
