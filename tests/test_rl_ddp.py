"""`oxa rl` on two CPU processes (torchrun, gloo; DDP, and DeepSpeed ZeRO-2 where installed): both ranks end
with identical parameters, and - rollouts being seeded by their place in the global batch, the loss a mean over
the step's tokens - with the parameters of the same run on one process. Also with a rollout transform that
joins rows to their groups (SCOPE's ``placement: join``), which changes every process's row count.

This file is also the worker that torchrun starts
(``python tests/test_rl_ddp.py WORKDIR MODEL_DIR [DEEPSPEED | join]``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEPS = 2
ZERO2 = Path(__file__).resolve().parents[1] / "configs" / "deepspeed" / "zero2.json"


def parity_reward(completions, **kwargs):
    return [float(len(c) % 2) for c in completions]


def config(work: Path, model_dir: Path, out: str, deepspeed: Path | None = None):
    from oxa.io import write_records
    from oxa.rl import RLConfig

    write_records(work / "p.jsonl", [{"id": f"p{i}", "query": f"What is {i} + {2 * i}?", "answer": str(3 * i)}
                                     for i in range(4)])
    return RLConfig(model=str(model_dir), output_dir=work / out, prompts=str(work / "p.jsonl"), prompt={"suffix": ""},
                    num_generations=4, prompts_per_step=2, micro_batch_size=4, max_response_length=8, max_steps=STEPS,
                    seed=7, learning_rate=0.5, max_grad_norm=0.0, weight_decay=0.0, trl_args={"optim": "sgd"},
                    deepspeed=deepspeed)


def join_copies(batch, trainer):
    """Joins to its group a copy of every rollout the parity reward failed, rewarded 1 and marked off-policy, in n
    slots: each process joins as many rows as its own rollouts say, and pads the rest."""
    from oxa.rl.rollout import Rollout

    joined = {i: Rollout(list(ids), text, torch.ones_like(batch.rewards[i]), [True] * len(ids))
              for i, (ids, text) in enumerate(zip(batch.completion_ids, batch.completions)) if batch.rewards[i, 0] == 0}
    n = trainer.num_generations
    batch.join(joined, n, slots=n, eos=trainer.processing_class.eos_token_id)
    return batch


def worker(work: Path, model_dir: Path, variant: str | None) -> None:
    from transformers import TrainerCallback

    from oxa.rl import train_rl

    deepspeed = Path(variant) if variant not in (None, "join") else None
    transform = join_copies if variant == "join" else None

    rank = int(os.environ["RANK"])

    class SaveParams(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, work / f"rank{rank}.pt")

    train_rl(config(work, model_dir, "multi", deepspeed), reward_funcs=[parity_reward], callbacks=[SaveParams()],
             rollout_transform=transform)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("variant", [None, ZERO2, "join"], ids=["ddp", "zero2", "ddp-join"])
def test_two_processes_end_identical_and_equal_to_one_process(tmp_path, tiny_model_dir, variant):
    from transformers import AutoModelForCausalLM

    from oxa.io import read_records
    from oxa.rl import train_rl

    if variant == ZERO2 and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
           str(tmp_path), str(tiny_model_dir), *([str(variant)] if variant else [])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    p0, p1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert all(torch.equal(p0[k], p1[k]) for k in p0)

    single = train_rl(config(tmp_path, tiny_model_dir, "single"), reward_funcs=[parity_reward], log=lambda *_: None,
                      rollout_transform=join_copies if variant == "join" else None)
    ref = AutoModelForCausalLM.from_pretrained(single, dtype=torch.float32).state_dict()
    assert any(not torch.equal(ref[k], v) for k, v in
               AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict().items())
    for k in ref:
        assert (p0[k] - ref[k]).abs().max().item() < 1e-5, k
    rows_ddp = read_records(tmp_path / "multi" / "rl_metrics.jsonl")
    rows_single = read_records(single / "rl_metrics.jsonl")
    assert [r["reward_mean"] for r in rows_ddp] == [r["reward_mean"] for r in rows_single]
    for a, b in zip(rows_ddp, rows_single):  # global token means, not means of per-process means
        assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-5)
        assert a["response_length"] == b["response_length"]


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
