"""Two CPU processes (torchrun, gloo): exact CE/UL counts per step, identical parameters on both ranks, and the
first step's update, and the epoch's scaled-down last step's, equal to a single-process full-batch computation
of the paper's loss.

This file is also the worker that torchrun starts (``python tests/test_training_ddp.py WORKDIR``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CE_PER_STEP, UL_PER_STEP, ALPHA, LR, STEPS = 3, 2, 0.5, 0.5, 4
SAVED_STEPS = (1, 3, 4)  # parameters kept after these optimizer steps


def records(n: int, offset: int, wrong: bool) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 3 + i + offset, 11 + 2 * i
        answer = a + b + (1 if wrong else 0)
        rows.append({"query": f"What is {a} + {b}?", "response": f"<think>{a} + {b} = {answer}</think> \\boxed{{{answer}}}"})
    return rows


def config(work: Path):
    from oxa.training import TrainConfig

    return TrainConfig(
        model=str(work / "model"), output_dir=work / "out", method="oxa-full",
        ce_data=work / "ce.jsonl", ul_data=work / "ul.jsonl", prompt={"suffix": ""},
        ce_per_step=CE_PER_STEP, ul_per_step=UL_PER_STEP, micro_batch_size=1, alpha=ALPHA,
        learning_rate=LR, lr_scheduler_type="constant", warmup_ratio=0.0, max_grad_norm=0.0, max_steps=STEPS,
        trainer_args={"optim": "sgd"}, seed=5,
    )


def worker(work: Path) -> None:
    """Runs on each rank: train, recording the rows of every micro-batch and the parameters after SAVED_STEPS."""
    from transformers import TrainerCallback

    from oxa.training import train
    from oxa.training.data import Collator

    rank = int(os.environ["RANK"])
    seen: list[list[list]] = []
    original = Collator.__call__

    def recording(self, items):
        seen.append([[row.kind, row.index, row.filler] for _, row in items])
        return original(self, items)

    Collator.__call__ = recording

    class SaveParameters(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step in SAVED_STEPS:
                torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                           work / f"step{state.global_step}_rank{rank}.pt")

    train(config(work), callbacks=[SaveParameters()])
    (work / f"rows_rank{rank}.json").write_text(json.dumps(seen))


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_match_single_process_full_batch(tmp_path, tiny_model_dir):
    import shutil

    from oxa.io import write_records

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    ce, ul = records(10, 0, wrong=False), records(4, 50, wrong=True)  # 3 full steps of 3 CE, then 1 CE left
    write_records(tmp_path / "ce.jsonl", ce)
    write_records(tmp_path / "ul.jsonl", ul)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    # exact counts per optimizer step over both processes
    rows = [json.loads((tmp_path / f"rows_rank{r}.json").read_text()) for r in range(2)]
    ga = -(-(CE_PER_STEP + UL_PER_STEP) // 2)  # micro-batches per process per step (micro_batch_size 1)
    assert len(rows[0]) == len(rows[1]) == STEPS * ga
    steps = []
    for s in range(STEPS):
        step_rows = [r for rank in rows for mb in rank[s * ga:(s + 1) * ga] for r in mb if not r[2]]
        # the last step of the epoch holds the 1 CE example left and UL in proportion: round(2 * 1/3) = 1
        assert sum(k == 0 for k, _, _ in step_rows) == (CE_PER_STEP if s < 3 else 1)
        assert sum(k == 1 for k, _, _ in step_rows) == (UL_PER_STEP if s < 3 else 1)
        steps.append(step_rows)

    # identical parameters on both ranks
    saved = {(s, r): torch.load(tmp_path / f"step{s}_rank{r}.pt") for s in SAVED_STEPS for r in range(2)}
    for s in SAVED_STEPS:
        assert all(torch.equal(saved[s, 0][k], saved[s, 1][k]) for k in saved[s, 0])

    # an SGD step equals a single-process gradient of sum_CE (1/CE_PER_STEP) mean_tok ce + alpha sum_UL
    # (1/UL_PER_STEP) mean_tok ul: the paper's per-sequence means for a full step, and that sum, so each row
    # weighs what it weighs in a full step, for the scaled-down last step
    from transformers import AutoModelForCausalLM

    from oxa.models import load_tokenizer
    from oxa.prompting import PromptFormat, encode_example

    tok = load_tokenizer(tmp_path / "model")
    fmt = PromptFormat(suffix="")

    logged = {h["step"]: h for h in json.loads((tmp_path / "out" / "oxa_train.json").read_text())["log_history"]
              if "ce_loss" in h}

    def check_update(step: int, before: dict | None, after: dict, step_rows: list) -> None:
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32)
        if before is not None:
            model.load_state_dict(before)
        terms: dict[int, list] = {0: [], 1: []}
        for kind, index, _ in step_rows:
            rec = (ce if kind == 0 else ul)[index]
            enc = encode_example(tok, rec["query"], rec["response"], fmt)
            ids = torch.tensor([enc.input_ids])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            tok_logp = logp.gather(1, ids[0, 1:, None]).squeeze(1)[enc.n_prompt - 1:]
            terms[kind].append(-tok_logp.mean() if kind == 0 else -torch.log1p(-tok_logp.exp()).mean())
        loss = sum(terms[0]) / CE_PER_STEP + ALPHA * sum(terms[1]) / UL_PER_STEP
        loss.backward()
        for name, param in model.named_parameters():
            expected = param.detach() - LR * param.grad
            assert (after[name] - expected).abs().max().item() < 2e-5, name
        # the logged losses are the step's per-sequence means, in a scaled last step too (not shrunk by it)
        assert logged[step]["ce_loss"] == pytest.approx(torch.stack(terms[0]).mean().item(), rel=1e-4)
        assert logged[step]["ul_loss"] == pytest.approx(torch.stack(terms[1]).mean().item(), rel=1e-4)

    check_update(1, None, saved[1, 0], steps[0])
    check_update(4, saved[3, 0], saved[4, 0], steps[3])


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
