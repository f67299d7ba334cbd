"""Shared fixtures: the real data directory and a tiny model with a locally trained tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OXA_TEST_SHARED_DATA", ROOT.parent / "shared" / "data"))
"""The public originals (unchanged files, see its README.md) that a few tests compare oxa's shipped and
hub-loaded sets against. This repository's CI keeps it beside the checkout; elsewhere point
$OXA_TEST_SHARED_DATA at a copy. Missing, those tests fail; they never skip."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"the real data directory {SHARED_DATA} is missing: this repository's CI has it beside the "
                    "checkout; set OXA_TEST_SHARED_DATA to a copy of it", pytrace=False)
    return SHARED_DATA


@pytest.fixture
def offline(monkeypatch):
    """The Hugging Face hub out of reach, as on a machine without network, answered at once (no retries).
    huggingface_hub and datasets read HF_HUB_OFFLINE once, at import, so their constants are set here."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def _corpus() -> list[str]:
    """Tokenizer training text from the sets oxa ships, so every machine trains the same tokenizer."""
    from oxa.data import shipped_rows

    texts = []
    for name in ("gsm8k", "math500"):
        for row in shipped_rows(name)[:200]:
            texts += [row["problem"], str(row["answer"])]
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


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Every matplotlib figure saved during the test, in order, to read back what was drawn."""
    from matplotlib.figure import Figure

    saved, real = [], Figure.savefig

    def record(self, *args, **kwargs):
        saved.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def figure_titled(figures: list, title: str):
    """The one saved figure whose suptitle or an axes title is ``title``."""
    found = [f for f in figures if title in ([f.get_suptitle()] + [ax.get_title() for ax in f.axes])]
    assert len(found) == 1, f"{len(found)} figures titled {title!r}"
    return found[0]


def drawn_histograms(ax) -> dict[str, tuple[list[float], list[float]]]:
    """label (before its ' (n=...)') -> (bar heights, bin edges) of each histogram drawn with ``ax.stairs``."""
    from matplotlib.patches import StepPatch

    out = {}
    for patch in ax.patches:
        if isinstance(patch, StepPatch):
            data = patch.get_data()
            out[patch.get_label().split(" (n=")[0]] = (list(map(float, data.values)), list(map(float, data.edges)))
    return out
