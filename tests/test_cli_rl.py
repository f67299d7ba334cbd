"""`oxa rl`: its flags reach RLConfig, `--export verl` writes the verl run instead of training, `--resume latest`
continues an interrupted run from its checkpoint."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from oxa.cli import app, main
from oxa.io import read_records, write_records
from oxa.prompting import PAPER_SUFFIX
from oxa.rl.prompts import load_prompts


def test_flags_and_aliases_reach_the_settings(monkeypatch, tmp_path):
    import oxa.rl.run

    seen = []
    monkeypatch.setattr(oxa.rl.run, "train_rl", lambda cfg, **kw: seen.append(cfg) or cfg.output_dir)
    config = tmp_path / "rl.yaml"
    config.write_text(yaml.safe_dump({"model": "from-file", "output_dir": "o", "prompts": "deepscaler",
                                      "num_generations": 4, "eval": {"benchmarks": ["aime24"], "every": 5}}))
    result = CliRunner().invoke(app, ["rl", "synth-rl", "-c", str(config), "-m", "m", "-o", str(tmp_path / "run"),
                                      "--lr", "1e-5", "--epochs", "3", "--resume", "latest", "--policy-loss", "clip-cov",
                                      "--reward.mode", "boxed", "--eval.n", "2", "--prefilter.enabled"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.prompts, cfg.model, cfg.output_dir) == ("synth-rl", "m", tmp_path / "run")
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.resume_from_checkpoint) == (1e-5, 3.0, "latest")
    assert (cfg.policy_loss, cfg.reward.mode, cfg.prefilter.enabled) == ("clip-cov", "boxed", True)
    assert (cfg.num_generations, cfg.eval.benchmarks, cfg.eval.every, cfg.eval.n) == (4, ["aime24"], 5, 2)  # the file


def test_help_shows_the_aliases_and_the_export():
    result = CliRunner().invoke(app, ["rl", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for flag in ("PROMPTS", "-m", "-o", "--lr", "--epochs", "--resume", "--export", "--export-path", "--nnodes",
                 "--n-gpus-per-node", "--policy-loss", "--clip-cov-ratio", "--prefilter.enabled"):
        assert flag in text, flag


def invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return "".join(result.output.split())


def test_export_writes_the_verl_run_and_does_not_train(tmp_path):
    out = tmp_path / "run"
    said = invoke(["rl", "synth-rl", "-m", "/cluster/models/start", "-o", str(out), "--limit", "6", "--num-generations", "4",
          "--policy-loss", "kl-cov", "--eval.benchmarks", "synth-rl", "--eval.limit", "3", "--export", "verl",
          "--nnodes", "2", "--n-gpus-per-node", "4"])
    bundle = out / "verl"  # the default --export-path
    assert sorted(p.name for p in bundle.iterdir()) == ["export.json", "oxa_reward.py", "run_verl.sh", "train.parquet",
                                                        "val-synth-rl.parquet"]
    assert not (out / "model.safetensors").exists() and not (out / "rl_metrics.jsonl").exists()
    rows = pq.read_table(bundle / "train.parquet").to_pylist()
    prompts = load_prompts("synth-rl", limit=6)
    assert [r["prompt"][-1]["content"] for r in rows] == [p["query"] + PAPER_SUFFIX for p in prompts]
    assert [r["reward_model"]["ground_truth"] for r in rows] == [p["answer"] for p in prompts]
    assert pq.read_table(bundle / "val-synth-rl.parquet").num_rows == 3
    spec = importlib.util.spec_from_file_location("oxa_reward", bundle / "oxa_reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gold = rows[0]["reward_model"]["ground_truth"]
    assert module.compute_score("synth-rl", f"<think>x</think> \\boxed{{{gold}}}", gold) == 1.0
    assert module.compute_score("synth-rl", f"\\boxed{{{gold}}}", gold) == 0.0  # no </think>: the paper's 0
    words = shlex.split((bundle / "run_verl.sh").read_text(encoding="utf-8").replace("\\\n", " "))
    assert "verl.trainer.main_ppo" in words
    for setting in ("actor_rollout_ref.model.path=/cluster/models/start", "actor_rollout_ref.rollout.n=4",
                    "actor_rollout_ref.actor.policy_loss.loss_mode=kl_cov", "trainer.nnodes=2",
                    "trainer.n_gpus_per_node=4", "trainer.experiment_name=run"):
        assert setting in words, setting
    assert "run_verl.sh" in said


def test_export_refuses_what_verl_cannot_honour_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["rl", "synth-rl", "-m", "m", "-o", str(tmp_path), "--scale-rewards", "batch", "--export", "verl",
              "--export-path", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot export to verl: scale_rewards batch") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_resume_latest_continues_from_the_last_checkpoint(tmp_path, tiny_model_dir):
    write_records(tmp_path / "p.jsonl", [{"id": f"q{i}", "query": f"What is {i} + 1?", "answer": str(i + 1)}
                                         for i in range(4)])
    run = ["rl", str(tmp_path / "p.jsonl"), "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"),
           "--num-generations", "2", "--prompts-per-step", "2", "--micro-batch-size", "4", "--max-response-length", "6",
           "--save-steps", "1", "--reward.workers", "1"]
    invoke([*run, "--max-steps", "2"])
    first = read_records(tmp_path / "out" / "rl_metrics.jsonl")
    invoke([*run, "--max-steps", "3", "--resume", "latest"])  # as if the first run had been stopped after step 2
    rows = read_records(tmp_path / "out" / "rl_metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[:2] == first  # steps 1-2 kept, not redone
    assert (Path(tmp_path / "out") / "checkpoint-3").is_dir()
