"""`oxa score` under torchrun: two real CPU processes (gloo) must write what one process writes."""

import os
import subprocess
import sys

import pytest
import torch

from oxa.distributed import dist_info, shard
from oxa.errors import OxaError
from oxa.io import read_records, write_records
from oxa.scoring import ScoreConfig, Scorer, score_file
from test_scoring import make_records

SETTINGS = ["--sort-window", "6", "--token-budget", "600", "--no-progress"]


def torchrun_score(inp, out, model_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "oxa.cli", "score", str(inp), "-o", str(out), "-m", str(model_dir), *SETTINGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The thread count of each torchrun worker, so float results compare bit for bit (and no stalls)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(tmp_path, model_dir, out: str) -> ScoreConfig:
    return ScoreConfig(input=tmp_path / "in.jsonl", output=tmp_path / out, model=str(model_dir),
                       sort_window=6, token_budget=600, progress=False)


@pytest.mark.distributed
def test_two_processes_finish_an_interrupted_run_with_the_single_process_output(
    tmp_path, tiny_model_dir, monkeypatch
):
    """One torchrun launch checks both: the merged shards equal an uninterrupted single-process run,
    and ranks pick up what an interrupted run with another process count left behind."""
    write_records(tmp_path / "in.jsonl", make_records(30, seed=8))
    score_file(config(tmp_path, tiny_model_dir, "expected.jsonl"))

    real, calls = Scorer.score_batch, []

    def crash_after_two(self, batch):
        calls.append(len(batch))
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Scorer, "score_batch", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        score_file(config(tmp_path, tiny_model_dir, "out.jsonl"))
    done = len((tmp_path / "out.jsonl.partial").read_text().splitlines())
    assert 0 < done < 30

    proc = torchrun_score(tmp_path / "in.jsonl", tmp_path / "out.jsonl", tiny_model_dir)
    assert f"scored {30 - done} records" in proc.stderr, proc.stderr
    assert "2 processes" in proc.stderr and f"{done} resumed" in proc.stderr
    assert read_records(tmp_path / "out.jsonl") == read_records(tmp_path / "expected.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected.jsonl", "in.jsonl", "out.jsonl"]


def test_shards_partition_the_items():
    n, world = 23, 4
    parts = [list(shard(n, r, world)) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_dist_info_reads_the_launcher_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist_info() == (0, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert dist_info() == (3, 4)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(OxaError, match="RANK=4, WORLD_SIZE=4"):
        dist_info()
