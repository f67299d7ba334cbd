"""What the method should do, on a tiny model: oxa-full pushes the UL set's likelihood down and the CE set's up;
oxa-mle leaves the UL term out (the UL set is only affected through the CE updates); entropy is logged for both."""

from __future__ import annotations

import json

import pytest
import torch

from oxa.io import write_records
from oxa.prompting import PromptFormat, encode_example
from oxa.training import TrainConfig, train


def sums(n: int, offset: int, wrong: bool) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 1 + (i * 7 + offset) % 9, 1 + (i * 5 + offset) % 9
        c = a + b + (2 if wrong else 0)
        rows.append({"query": f"{a}+{b}?", "response": f"<think>{a}+{b}={c}</think> \\boxed{{{c}}}"})
    return rows


@torch.no_grad()
def mean_nll(model_dir, rows) -> float:
    """Per-sequence mean response NLL, from full logits (independent of the trainer's fused loss)."""
    from transformers import AutoModelForCausalLM

    from oxa.models import load_tokenizer

    tok, model = load_tokenizer(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    values = []
    for r in rows:
        enc = encode_example(tok, r["query"], r["response"], PromptFormat(suffix=""))
        ids = torch.tensor([enc.input_ids])
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None]).squeeze(1)
        values.append(-logp[enc.n_prompt - 1:].mean().item())
    return sum(values) / len(values)


@pytest.mark.slow
def test_oxa_full_suppresses_ul_and_promotes_ce(tmp_path, tiny_model_dir):
    ce, ul = sums(32, 0, wrong=False), sums(32, 3, wrong=True)
    write_records(tmp_path / "ce.jsonl", ce)
    write_records(tmp_path / "ul.jsonl", ul)
    common = dict(model=str(tiny_model_dir), ce_data=tmp_path / "ce.jsonl", ul_data=tmp_path / "ul.jsonl",
                  prompt={"suffix": ""}, ce_per_step=8, ul_per_step=8, micro_batch_size=16, learning_rate=3e-3,
                  warmup_ratio=0.0, lr_scheduler_type="constant", max_steps=150, logging_steps=50, seed=0)
    full = train(TrainConfig(**common, method="oxa-full", alpha=1.0, output_dir=tmp_path / "full"))
    mle = train(TrainConfig(**common, method="oxa-mle", output_dir=tmp_path / "mle"))

    base_ce, base_ul = mean_nll(tiny_model_dir, ce), mean_nll(tiny_model_dir, ul)
    full_ce, full_ul = mean_nll(full, ce), mean_nll(full, ul)
    mle_ce, mle_ul = mean_nll(mle, ce), mean_nll(mle, ul)
    assert full_ce < base_ce - 1.0 and mle_ce < base_ce - 1.0  # both learn the CE set
    # CE training alone makes the look-alike errors likelier too; the UL term pushes them well below that
    assert mle_ul < base_ul
    assert full_ul > mle_ul + 0.5 and full_ul > base_ul  # below even the untrained model's likelihood

    logs = json.loads((full / "oxa_train.json").read_text())["log_history"]
    steps = [h for h in logs if "loss" in h]
    assert all(h["entropy_ce"] > 0 and h["entropy_ul"] > 0 for h in steps)
    assert steps[-1]["ul_loss"] < 5 and steps[-1]["weighted_ul_loss"] == steps[-1]["ul_loss"]  # alpha = 1
    mle_steps = [h for h in json.loads((mle / "oxa_train.json").read_text())["log_history"] if "loss" in h]
    assert all("entropy_ce" in h and "ul_loss" not in h for h in mle_steps)
