"""Tiny PRMs built from a config, for tests and for training on the synthetic world without a download.

A Qwen2 token classifier with 2 labels, its tokenizer given the ``<extra_0>`` mark as a special
token: the Qwen2.5-Math-PRM layout at toy size. It starts from random weights, or from a saved causal
LM (``base``) whose body it keeps, which is how :mod:`oxa.prm.train` starts a PRM from the synthetic
world's pre-trained base model. (A tag-style PRM is any causal LM: :func:`oxa.tiny.build_tiny_model`.)
"""

from __future__ import annotations

import copy
from pathlib import Path

from oxa.prm.hf import STEP_TOKEN


def with_step_token(tokenizer, step_token: str = STEP_TOKEN):
    """A copy of ``tokenizer`` that knows ``step_token`` as one special token."""
    tokenizer = copy.deepcopy(tokenizer)
    if step_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [step_token]})
    return tokenizer


def build_tiny_separator_prm(tokenizer, *, seed: int = 0, step_token: str = STEP_TOKEN, base: str | Path | None = None,
                             **config_kwargs):
    """(model, tokenizer): a 2-label Qwen2 token classifier; from ``base``'s body if given, else random."""
    import torch
    from transformers import AutoModelForTokenClassification

    from oxa.tiny import tiny_config

    tokenizer = with_step_token(tokenizer, step_token)
    torch.manual_seed(seed)
    if base is not None:
        model = AutoModelForTokenClassification.from_pretrained(str(base), num_labels=2, dtype=torch.float32)
        model.resize_token_embeddings(len(tokenizer))
    else:
        config = tiny_config(tokenizer, **config_kwargs)
        config.num_labels = 2
        model = AutoModelForTokenClassification.from_config(config, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer

