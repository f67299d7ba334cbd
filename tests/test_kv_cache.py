"""The growing KV cache gives the logits of transformers' own DynamicCache, step by step."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from oxa.generation import kv_cache
from oxa.generation.kv_cache import GrowingLayer, growing_cache


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from oxa.models import load_model

    return load_model(tiny_model_dir).eval()


@torch.inference_mode()
def decode(model, cache, prompt: torch.Tensor, steps: list[torch.Tensor], keep: dict[int, list[int]]):
    """Prefill ``prompt``, then feed one token per row per step, dropping rows as ``keep[step]`` says."""
    mask = torch.ones_like(prompt)
    out = [model(input_ids=prompt, attention_mask=mask, cache=cache, use_cache=True).logits[:, -1]]
    rows = torch.arange(prompt.shape[0])
    for t, step in enumerate(steps):
        if t in keep:
            index = torch.tensor(keep[t])
            cache.batch_select_indices(index)
            rows, mask = rows[index], mask[index]
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        out.append(model(input_ids=step[rows, None], attention_mask=mask, cache=cache, use_cache=True).logits[:, -1])
    return out


def test_growing_cache_gives_dynamic_cache_logits_across_regrowths_and_dropped_rows(model, monkeypatch):
    monkeypatch.setattr(kv_cache, "MIN_GROWTH", 3)  # re-allocate every few tokens
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (4, 5), generator=g)
    steps = [torch.randint(3, vocab, (4,), generator=g) for _ in range(12)]
    keep = {4: [0, 2, 3], 9: [0, 2]}  # positions in the then-current batch
    cache = growing_cache(model.config)
    assert all(type(layer) is GrowingLayer for layer in cache.layers)
    ours = decode(model, cache, prompt, steps, keep)
    theirs = decode(model, DynamicCache(config=model.config), prompt, steps, keep)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert cache.get_seq_length() == 5 + 12
    layer = cache.layers[0]
    assert layer.key_buffer.shape[-2] > layer.length  # spare room, not a copy per token
