"""The output layer computing the fused loss (what lets FSDP and ZeRO-3 gather its weight first): the model's loss and
every parameter's gradient against full logits from an untouched copy, logits outside a batch, and the models it
refuses before training."""

from __future__ import annotations

import pytest
import torch

from oxa.errors import OxaError
from oxa.losses import CE, IGNORE, UL
from oxa.training.loss_head import LossHead, check_fused_loss_supported


def load(model_dir, cls=None):
    from transformers import AutoModelForCausalLM

    return (cls or AutoModelForCausalLM).from_pretrained(model_dir, dtype=torch.float32)


def batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding
    kinds = torch.full((2, 9), IGNORE)
    kinds[0, 3:] = CE
    kinds[1, 2:6] = UL
    return ids, mask, kinds, torch.rand(2, 9, generator=g)


def test_model_returns_the_loss_and_gradients_of_full_logits(tiny_model_dir):
    model, reference = load(tiny_model_dir), load(tiny_model_dir)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as Qwen2.5-Math-1.5B
    ids, mask, kinds, weights = batch(model.config.vocab_size)
    head = LossHead(model, chunk_size=4)
    with head.batch(ids[:, 1:], kinds, weights):
        loss = model(input_ids=ids, attention_mask=mask).logits
    head.check_output(loss)
    loss.backward()

    logp = torch.log_softmax(reference(input_ids=ids, attention_mask=mask).logits[:, :-1].double(), -1)
    logp_y = logp.gather(2, ids[:, 1:, None]).squeeze(2)
    per_token = torch.where(kinds == CE, -logp_y, torch.where(kinds == UL, -torch.log1p(-logp_y.exp()), 0.0))
    expected = (per_token * weights).sum()
    expected.backward()
    assert abs(loss.item() - expected.item()) < 1e-5
    assert torch.allclose(head.result.token_loss.double(), per_token[kinds != IGNORE], atol=1e-5)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        assert (ours.grad - theirs.grad).abs().max().item() < 1e-5, name  # the embedding: both of its uses

    # outside a batch the output layer computes logits again
    assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_models_whose_logits_are_not_the_projection_are_refused(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import Gemma2Config, Gemma2ForCausalLM, Qwen2ForCausalLM

    from oxa.io import write_records
    from oxa.tiny import save_tiny
    from oxa.training import TrainConfig, train

    # `oxa train` with a soft-capped model (Gemma 2): one line, before any step
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16))
    save_tiny(gemma, tiny_tokenizer, tmp_path / "gemma2")
    write_records(tmp_path / "ce.jsonl", [{"query": "1+1?", "response": "<think>1+1=2</think> \\boxed{2}"}] * 2)
    with pytest.raises(OxaError, match=r"final_logit_softcapping=30\.0") as refused:
        train(TrainConfig(model=str(tmp_path / "gemma2"), output_dir=tmp_path / "out", method="sft",
                          ce_data=tmp_path / "ce.jsonl", ce_per_step=2, max_steps=1))
    assert "\n" not in str(refused.value) and not (tmp_path / "out" / "model.safetensors").exists()

    # an output projection with a bias
    model = load(tiny_model_dir)
    model.lm_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with pytest.raises(OxaError, match="bias"):
        check_fused_loss_supported(model)

    # a model that rescales what its output layer returns, caught on the first batch
    class HalvedLogits(Qwen2ForCausalLM):
        def forward(self, **kwargs):
            out = super().forward(**kwargs)
            out.logits = out.logits / 2
            return out

    model = load(tiny_model_dir, HalvedLogits)
    ids, mask, kinds, weights = batch(model.config.vocab_size)
    head = LossHead(model)
    with head.batch(ids[:, 1:], kinds, weights):
        loss = model(input_ids=ids, attention_mask=mask).logits
    with pytest.raises(OxaError, match="transforms its output layer's result"):
        head.check_output(loss)
