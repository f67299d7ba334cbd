"""Shared fixtures: the real data directory and a tiny model with a locally trained tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def _corpus() -> list[str]:
    texts = []
    gsm = SHARED_DATA / "gsm8k" / "train.jsonl"
    if gsm.exists():
        with open(gsm, encoding="utf-8") as f:
            for _, line in zip(range(400), f):
                row = json.loads(line)
                texts += [row["question"], row["answer"]]
    texts += ["<think>\n12 + 30 = 42\n</think>\n\\boxed{42}", "Let's reason step by step."] * 20
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from oxa.tiny import train_tokenizer

    return train_tokenizer(_corpus(), vocab_size=400)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved 2-layer, hidden-64 Qwen2 model with the tiny tokenizer (random weights, seed 0)."""
    from oxa.tiny import build_tiny_model, save_tiny

    model = build_tiny_model(tiny_tokenizer, hidden=64, layers=2, heads=4, kv_heads=2, seed=0)
    return save_tiny(model, tiny_tokenizer, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def synth_base_model(tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic world's quick base model, pre-trained once per session: (cache root, model dir)."""
    from oxa.synth.basemodel import QUICK_BASE, build_base_model

    cache = tmp_path_factory.mktemp("oxa-cache")
    return cache, build_base_model(QUICK_BASE, cache=cache, progress=False)
