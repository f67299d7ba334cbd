"""The base model shipped with oxa: built from the default config, loads, behaves like a pre-trained model
of the world, is what a cold build returns, and a rebuild reproduces a model up to float tolerance."""

from __future__ import annotations

import math
import random
import time
from statistics import median

import pytest
import torch
from typer.testing import CliRunner

from oxa.cli import app
from oxa.prompting import PromptFormat, encode_example
from oxa.synth.basemodel import QUICK_BASE, BaseModelConfig, build_base_model
from oxa.synth.corpus import pretrain_share, sample_problem
from oxa.synth.shipped import SHIPPED, shipped_key, shipped_model, weight_difference
from oxa.synth.teacher import solve, strategies_for

REBUILD = "oxa synth /tmp/world --base-model --no-shipped --cache /tmp/rebuild --ship-to src/oxa/synth/base"


def test_shipped_weights_are_the_default_configs():
    assert shipped_key() == BaseModelConfig().key(), f"the default base model changed: re-ship it with `{REBUILD}`"
    assert shipped_model(BaseModelConfig()) == SHIPPED
    assert shipped_model(BaseModelConfig(seed=1)) is None


def _nll(model, tok, query: str, response: str) -> float:
    enc = encode_example(tok, query, response, PromptFormat())
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    return -logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]][enc.n_prompt - 1:].mean().item()


def test_shipped_model_loads_and_knows_its_world():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(SHIPPED).eval()
    tok = AutoTokenizer.from_pretrained(SHIPPED)
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 400_000
    rng, frequent, rare = random.Random(11), [], []
    for i in range(12):  # held-out problems, each solved the most frequent and the rarest way it was pre-trained on
        p = sample_problem(rng, i, prefix="s", held=True)
        seen = sorted((s for s in strategies_for(p) if pretrain_share(p.family, s) > 0),
                      key=lambda s: pretrain_share(p.family, s))
        rare.append(math.exp(_nll(model, tok, p.query, solve(p, seen[0]).response)))
        frequent.append(math.exp(_nll(model, tok, p.query, solve(p, seen[-1]).response)))
    assert median(frequent) < 1.6 < median(rare) or median(rare) > 1.2 * median(frequent), (frequent, rare)
    assert median(frequent) < 2.0  # pre-trained: an untrained model's PPL is in the hundreds


def test_a_cold_build_of_the_default_config_copies_the_shipped_model(tmp_path):
    start = time.perf_counter()
    path = build_base_model(BaseModelConfig(), cache=tmp_path, progress=False)
    assert time.perf_counter() - start < 5.0  # no pre-training
    assert (path / "model.safetensors").read_bytes() == (SHIPPED / "model.safetensors").read_bytes()
    assert weight_difference(path, SHIPPED) == 0.0


def test_synth_ships_a_built_model(synth_base_model, tmp_path):
    cache, built = synth_base_model
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "w"), "--world.n-queries", "4", "--base-model", "--quick",
                                      "--cache", str(cache), "--no-shipped", "--ship-to", str(tmp_path / "ship")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ship" / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()
    assert shipped_key(tmp_path / "ship") == QUICK_BASE.key()


@pytest.mark.slow
def test_a_rebuild_reproduces_the_model_up_to_float_tolerance(synth_base_model, tmp_path):
    """Pre-training again, on another thread count, gives the same model up to float summation order."""
    _, built = synth_base_model
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        again = build_base_model(QUICK_BASE, cache=tmp_path, progress=False, shipped=False)
    finally:
        torch.set_num_threads(threads)
    assert (again / "tokenizer.json").read_text() == (built / "tokenizer.json").read_text()
    assert weight_difference(again, built) < 1e-3
