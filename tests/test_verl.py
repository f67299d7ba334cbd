"""The verl export: data in the authors' format, a reward module verl can load, a command line verl accepts.

verl itself cannot share oxa's environment (verl 0.9 pins an older transformers). The checks that need it
run in verl's own interpreter - ``OXA_VERL_PYTHON=/path/to/verl-venv/bin/python`` (with oxa's ``src`` on
its PYTHONPATH, as on a cluster) - and are skipped without one; everything else runs here.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_reward import CASES, reference_reward

from oxa.errors import OxaError
from oxa.prompting import PAPER_SUFFIX, PromptFormat, encode_prompt
from oxa.rl.prompts import load_prompts
from oxa.rl.reward import MathReward, RewardConfig
from oxa.rl.config import RLConfig, RLEvalConfig
from oxa.rl.verl import REWARD_FILE, SCRIPT_FILE, VerlOptions, check_exportable, export_verl, verl_overrides

SRC = Path(__file__).resolve().parents[1] / "src"


def load_reward_module(path: Path):
    """The way verl's ``load_extern_object`` loads a custom reward: a module from a file path."""
    spec = importlib.util.spec_from_file_location("custom_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synth_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("verl")
    val = out.parent / "val.jsonl"
    val.write_text(json.dumps({"id": "m1", "query": "Speed of light?", "answer": ["3e8\n", "300000000"]}) + "\n"
                   + json.dumps({"id": "m2", "query": "2+2?", "answer": "4"}) + "\n", encoding="utf-8")
    cfg = RLConfig(model="/models/tiny", output_dir=out.parent / "run", prompts="synth-rl", limit=12,
                   eval={"benchmarks": ["synth-rl", str(val)]}, max_prompt_length=256, max_response_length=512)
    return cfg, out, export_verl(cfg, out, VerlOptions(n_gpus_per_node=2))


def test_export_matches_the_authors_files(shared_data, tmp_path):
    """Exporting the authors' own DeepScaleR and AIME24 data reproduces their verl rows."""
    cfg = RLConfig(model="m", output_dir=tmp_path / "run", prompts="deepscaler", limit=40,
                   eval={"benchmarks": ["aime24-val"]}, data_dir=shared_data)
    summary = export_verl(cfg, tmp_path)
    assert summary["rows"] == {"train.parquet": 40, "val-aime24-val.parquet": 30}
    for ours, theirs, n in (("train.parquet", "deepscaler-10k.parquet", 40), ("val-aime24-val.parquet", "aime24-val.parquet", 30)):
        mine = pq.read_table(tmp_path / ours)
        ref = pq.read_table(shared_data / "rl" / theirs).slice(0, n)
        for col in ("prompt", "ability", "reward_model"):
            assert mine.column(col).to_pylist() == ref.column(col).to_pylist(), col
        assert [e["index"] for e in mine.column("extra_info").to_pylist()] == [e["index"] for e in ref.column("extra_info").to_pylist()]
        assert [e["split"] for e in mine.column("extra_info").to_pylist()] == [e["split"] for e in ref.column("extra_info").to_pylist()]
    # and back: the exported file is itself a prompt source with the same queries, answers and ids
    back = load_prompts(tmp_path / "train.parquet")
    orig = load_prompts("deepscaler", limit=40, data_dir=shared_data)
    assert [(b["query"], b["answer"]) for b in back] == [(o["query"], o["answer"]) for o in orig]
    assert [b["extra_info"]["id"] for b in back] == [o["id"] for o in orig]


def test_prompts_carry_oxa_prompt_format(synth_export):
    cfg, out, summary = synth_export
    rows = pq.read_table(out / "train.parquet").to_pylist()
    prompts = load_prompts("synth-rl", limit=12)
    assert [r["prompt"] for r in rows] == [[{"role": "user", "content": p["query"] + PAPER_SUFFIX}] for p in prompts]
    assert [r["reward_model"]["ground_truth"] for r in rows] == [p["answer"] for p in prompts]
    assert {r["data_source"] for r in rows} == {"synth-rl"}
    val = pq.read_table(out / "val-val.parquet").to_pylist()  # a list gold makes the column a list of texts
    assert [r["reward_model"]["ground_truth"] for r in val] == [["3e8", "300000000"], ["4"]]
    assert summary["files"]["val"] == ["val-synth-rl.parquet", "val-val.parquet"]
    with_system = export_verl(cfg.model_copy(update={"prompt": PromptFormat(system="Be brief."), "eval": RLEvalConfig()}),
                              out.parent / "sys")
    row = pq.read_table(out.parent / "sys" / "train.parquet").slice(0, 1).to_pylist()[0]
    assert row["prompt"] == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": prompts[0]["query"] + PAPER_SUFFIX}]
    assert with_system["files"]["val"] == []
    with pytest.raises(OxaError, match="template"):
        export_verl(cfg.model_copy(update={"prompt": PromptFormat(template=False)}), out.parent / "raw")


def test_reward_module_has_verls_signature_and_oxas_results(synth_export):
    cfg, out, _ = synth_export
    module = load_reward_module(out / REWARD_FILE)
    params = inspect.signature(module.compute_score).parameters
    assert list(params)[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    assert params["extra_info"].default is None and any(p.kind is p.VAR_KEYWORD for p in params.values())
    texts, golds, _ = zip(*CASES)
    # verl's naive reward manager calls it with keywords, one rollout at a time; list golds come as arrays
    scores = [module.compute_score(data_source="synth-rl", solution_str=t, ground_truth=np.array(g) if isinstance(g, list)
                                   else str(g), extra_info={"index": i}, reward_router_address=None)
              for i, (t, g) in enumerate(zip(texts, golds))]
    assert scores == [reference_reward(t, g) for t, g in zip(texts, golds)]
    assert module.SETTINGS == cfg.reward.model_copy(update={"workers": 1})


def test_reward_module_keeps_the_exported_settings(tmp_path):
    cfg = RLConfig(model="m", output_dir=tmp_path / "run", prompts="synth-rl", limit=2,
                   reward=RewardConfig(mode="boxed", require_think=False, timeout=2.0))
    export_verl(cfg, tmp_path)
    module = load_reward_module(tmp_path / REWARD_FILE)
    score = lambda text: module.compute_score("s", text, "7")  # noqa: E731
    assert score("so x = 7") == 0.0  # boxed mode: an unboxed answer does not count
    assert score("\\boxed{7}") == 1.0  # no </think> needed
    with MathReward(RewardConfig(mode="boxed", require_think=False)) as reward:
        assert [r.reward for r in reward.grade(["so x = 7", "\\boxed{7}"], ["7", "7"])] == [0.0, 1.0]


def test_script_passes_the_settings_and_extra_overrides(synth_export, tmp_path):
    """Run the script with an interpreter that records its arguments instead of starting verl."""
    cfg, out, _ = synth_export
    recorder = tmp_path / "record.py"
    recorder.write_text("import json, sys\njson.dump(sys.argv[1:], open(sys.argv[0] + '.json', 'w'))\n", encoding="utf-8")
    subprocess.run(["bash", str(out / SCRIPT_FILE), "trainer.nnodes=2"], check=True,
                   env={**os.environ, "PYTHON": f"{sys.executable} {recorder}"})
    argv = json.loads(Path(f"{recorder}.json").read_text(encoding="utf-8"))
    here = str(out.resolve())
    expected = verl_overrides(cfg, VerlOptions(n_gpus_per_node=2), train_file=f"{here}/train.parquet",
                              val_files=[f"{here}/val-synth-rl.parquet", f"{here}/val-val.parquet"],
                              reward_file=f"{here}/{REWARD_FILE}", output_dir=f"{here}/checkpoints")
    assert argv == ["-m", "verl.trainer.main_ppo", *expected, "trainer.nnodes=2"]
    settings = dict(o.split("=", 1) for o in expected)
    assert settings["actor_rollout_ref.rollout.n"] == "8" and settings["actor_rollout_ref.rollout.temperature"] == "0.85"
    assert settings["actor_rollout_ref.actor.kl_loss_type"] == "low_var_kl" and settings["data.train_batch_size"] == "64"
    assert settings["actor_rollout_ref.actor.optim.lr"] == "2e-06" and settings["trainer.n_gpus_per_node"] == "2"
    assert settings["trainer.experiment_name"] == "run" and settings["trainer.resume_mode"] == "disable"


def test_oxa_rl_settings_map_to_verls_keys_with_steps_counted_in_rollout_batches():
    """oxa counts optimizer steps, verl rollout batches: with 2 updates per batch every step count halves."""
    cfg = RLConfig(model="m", output_dir="/runs/a", prompts="synth-rl", num_generations=4, prompts_per_step=64,
                   updates_per_rollout_batch=2, max_steps=100, save_steps=20, save_total_limit=3,
                   policy_loss="clip-cov", report_to=["tensorboard"], resume_from_checkpoint="latest",
                   lr_scheduler_type="cosine", warmup_ratio=0.05,
                   eval={"benchmarks": ["aime24"], "n": 4, "temperature": 0.7, "top_p": 0.9, "every": 10})
    settings = dict(o.split("=", 1) for o in verl_overrides(cfg, VerlOptions(nnodes=2, experiment_name="x"),
                                                            train_file="t", val_files=["v"], reward_file="r",
                                                            output_dir="o"))
    expected = {"trainer.total_training_steps": "50", "trainer.total_epochs": "50", "trainer.save_freq": "10",
                "trainer.test_freq": "5", "actor_rollout_ref.actor.ppo_mini_batch_size": "32", "data.train_batch_size": "64"}
    assert {k: settings[k] for k in expected} == expected
    assert settings["actor_rollout_ref.actor.policy_loss.loss_mode"] == "clip_cov"
    assert settings["actor_rollout_ref.actor.policy_loss.clip_cov_ratio"] == "0.0002"
    assert settings["actor_rollout_ref.rollout.n"] == "4" and settings["actor_rollout_ref.rollout.val_kwargs.n"] == "4"
    assert settings["actor_rollout_ref.rollout.val_kwargs.temperature"] == "0.7"
    assert settings["actor_rollout_ref.actor.optim.lr_scheduler_type"] == "cosine"
    assert settings["actor_rollout_ref.actor.optim.lr_warmup_steps_ratio"] == "0.05"
    assert settings["trainer.logger"] == "[console,tensorboard]" and settings["trainer.max_actor_ckpt_to_keep"] == "3"
    assert (settings["trainer.resume_mode"], settings["trainer.nnodes"], settings["trainer.experiment_name"]) == \
        ("auto", "2", "x")
    no_steps = verl_overrides(cfg.model_copy(update={"max_steps": None, "num_train_epochs": 3.0}), VerlOptions(),
                              train_file="t", val_files=[], reward_file="r", output_dir="o")
    assert "trainer.total_epochs=3" in no_steps and "trainer.test_freq=-1" in no_steps
    assert not any(o.startswith("trainer.total_training_steps") for o in no_steps)


@pytest.mark.parametrize(("setting", "message"), [
    ({"scale_rewards": "batch"}, "scale_rewards batch"),
    ({"mask_truncated_completions": True}, "mask_truncated_completions"),
    ({"clip_ratio_c": None}, "clip_ratio_c null"),
    ({"max_grad_norm": 0.0}, "max_grad_norm 0"),
    ({"lr_scheduler_type": "linear"}, "lr_scheduler_type linear"),
    ({"num_train_epochs": 1.5}, "num_train_epochs 1.5"),
    ({"updates_per_rollout_batch": 2, "max_steps": 5}, "max_steps \\(5\\)"),
    ({"resume_from_checkpoint": "/runs/a/checkpoint-40"}, "resume_from_checkpoint"),
    ({"eval": {"max_new_tokens": 100}}, "eval.max_new_tokens"),
    ({"report_to": ["comet_ml"]}, "report_to comet_ml"),
    ({"trl_args": {"optim": "sgd"}}, "trl_args \\(optim\\)"),
    ({"prompt": {"template": False}}, "prompt.template false"),
    ({"prompt": {"chat_template": "{{ messages[0]['content'] }}"}}, "prompt.chat_template"),
    ({"scope": {"enabled": True}}, "scope.enabled"),
])
def test_settings_verl_cannot_honour_are_refused_in_one_line(setting, message):
    cfg = RLConfig(model="m", output_dir="o", prompts="synth-rl", **setting)
    with pytest.raises(OxaError, match=f"^cannot export to verl: {message}") as e:
        check_exportable(cfg)
    assert "\n" not in str(e.value)
    check_exportable(RLConfig(model="m", output_dir="o", prompts="synth-rl"))  # the defaults (the paper's) export


# ------------------------------------------------------------------------- inside verl's environment

VERL_CHECK = r'''
"""Stands in for `python -m verl.trainer.main_ppo`: compose and validate the config as main_ppo does, load
the custom reward with verl's loader and call it, read the training parquet with verl's RLHFDataset."""
import json, os, sys
from pathlib import Path

assert sys.argv[1:3] == ["-m", "verl.trainer.main_ppo"], sys.argv
import verl
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.dataset.rl_dataset import RLHFDataset

with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
    cfg = compose(config_name="ppo_trainer", overrides=sys.argv[3:])
validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
fn = get_custom_reward_fn(cfg)
cases = json.loads(os.environ["CASES"])
scores = [fn(data_source="d", solution_str=t, ground_truth=g, extra_info={"index": i}) for i, (t, g) in enumerate(cases)]
tok = AutoTokenizer.from_pretrained(os.environ["TOKENIZER"])
data = RLHFDataset(list(cfg.data.train_files), tok, cfg.data)
ids = [list(tok.apply_chat_template(data[i]["raw_prompt"], add_generation_prompt=True, tokenize=True, return_dict=False))
       for i in range(len(data))]
a, r = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
json.dump({"scores": scores, "prompt_ids": ids, "verl": verl.__version__,
           "config": [r.n, r.temperature, a.optim.lr, a.kl_loss_coef, a.policy_loss.loss_mode, cfg.data.train_batch_size,
                      a.ppo_mini_batch_size, cfg.trainer.nnodes]}, open(os.environ["OUT"], "w"))
'''


def _verl_python() -> str | None:
    if os.environ.get("OXA_VERL_PYTHON"):
        return os.environ["OXA_VERL_PYTHON"]
    return sys.executable if importlib.util.find_spec("verl") else None


@pytest.mark.slow
@pytest.mark.skipif(_verl_python() is None, reason="verl not installed here and OXA_VERL_PYTHON not set")
def test_verl_runs_the_export(tmp_path, tiny_tokenizer):
    """verl's own config, validation, custom-reward loader and dataset accept the export."""
    tok_dir = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok_dir)
    cfg = RLConfig(model=str(tok_dir), output_dir=tmp_path / "run", prompts="synth-rl", limit=6,
                   eval={"benchmarks": ["synth-rl"]}, policy_loss="kl-cov", max_prompt_length=512, max_response_length=256,
                   max_steps=10, save_steps=5, save_total_limit=2, lr_scheduler_type="cosine", warmup_ratio=0.1,
                   resume_from_checkpoint="latest", report_to=["tensorboard"])  # every optional key verl must know
    out = tmp_path / "export"
    export_verl(cfg, out)
    check = tmp_path / "check.py"
    check.write_text(VERL_CHECK, encoding="utf-8")
    cases = [(t, g if isinstance(g, list) else str(g)) for t, g, _ in CASES]
    env = {**os.environ, "PYTHON": f"{_verl_python()} {check}", "CASES": json.dumps(cases), "TOKENIZER": str(tok_dir),
           "OUT": str(tmp_path / "out.json"), "PYTHONPATH": str(SRC), "HOME": str(tmp_path)}
    run = subprocess.run(["bash", str(out / SCRIPT_FILE), "trainer.nnodes=3"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert got["scores"] == [reference_reward(t, g) for t, g in cases]
    assert got["config"] == [8, 0.85, 2e-6, 0.001, "kl_cov", 64, 64, 3]
    prompts = load_prompts("synth-rl", limit=6)
    assert got["prompt_ids"] == [encode_prompt(tiny_tokenizer, p["query"], cfg.prompt) for p in prompts]
