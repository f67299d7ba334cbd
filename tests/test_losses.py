"""The chunked losses against explicit full-logits formulas with autograd (fp32, max abs diff 1e-5)."""

from __future__ import annotations

import pytest
import torch

from oxa.losses import CE, IGNORE, UL, GeneralizedCE, chunk_losses, fused_token_losses, token_weights

torch.set_num_threads(1)
V, H, N = 97, 16, 23


def explicit(hidden, weight, targets, kinds, weights, gce=None):
    """Full logits, autograd, written from the formulas: CE = -log p_y, UL = -log(1 - p_y), GCE = -sum c log p."""
    return explicit_from_logits((hidden @ weight.T).double(), targets, kinds, weights, gce)


def explicit_from_logits(logits, targets, kinds, weights, gce=None):
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    logp_y = logp.gather(1, targets[:, None]).squeeze(1)
    ce = -logp_y
    ul = -torch.log1p(-p.gather(1, targets[:, None]).squeeze(1))
    if gce is not None:
        with torch.no_grad():
            py = p.gather(1, targets[:, None]).squeeze(1)
            w = py ** (1 - (1 - py) ** gce.beta)
            top = torch.zeros_like(p, dtype=torch.bool)
            top.scatter_(1, logits.topk(min(gce.top_k, logits.shape[-1]), -1).indices, True)
            c = torch.where(top, gce.lambda_top, gce.lambda_tail) * p
            c.scatter_(1, targets[:, None], w[:, None])
        ce = -(c * logp).sum(-1)
    per_token = torch.where(kinds == UL, ul, torch.where(kinds == CE, ce, torch.zeros_like(ce)))
    entropy = -(p * logp).sum(-1)
    return (per_token * weights.double()).sum(), per_token.detach(), entropy.detach()


def make(seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(N, H, generator=g) * scale).requires_grad_()
    weight = torch.randn(V, H, generator=g).requires_grad_()
    targets = torch.randint(0, V, (N,), generator=g)
    kinds = torch.tensor([CE, UL, IGNORE] * 7 + [CE, UL])
    weights = torch.rand(N, generator=g)
    return hidden, weight, targets, kinds, weights


def grads(total, hidden, weight):
    return torch.autograd.grad(total, (hidden, weight))


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
@pytest.mark.parametrize(
    "gce", [None, GeneralizedCE(beta=-0.25, lambda_top=0.05, lambda_tail=-0.1, top_k=10), GeneralizedCE(beta=0.5)]
)
def test_value_and_gradient_match_full_logits(chunk_size, gce):
    hidden, weight, targets, kinds, weights = make()
    ours = fused_token_losses(hidden, weight, targets, kinds, weights, gce=gce, chunk_size=chunk_size)
    ref_total, ref_tok, ref_ent = explicit(hidden, weight, targets, kinds, weights, gce)
    assert abs(ours.loss.item() - ref_total.item()) < 1e-5
    assert torch.allclose(ours.token_loss.double(), ref_tok, atol=1e-5, rtol=0)
    assert torch.allclose(ours.entropy.double(), ref_ent, atol=1e-5, rtol=0)
    for a, b in zip(grads(ours.loss, hidden, weight), grads(ref_total, hidden, weight)):
        assert (a.double() - b).abs().max().item() < 1e-5


def test_backward_scales_by_incoming_gradient():
    hidden, weight, targets, kinds, weights = make(seed=1)
    ours = fused_token_losses(hidden, weight, targets, kinds, weights, chunk_size=4)
    ref, _, _ = explicit(hidden, weight, targets, kinds, weights)
    for a, b in zip(grads(3.5 * ours.loss, hidden, weight), grads(3.5 * ref, hidden, weight)):
        assert (a.double() - b).abs().max().item() < 1e-5


def test_generalized_ce_formula_at_zero_is_cross_entropy(monkeypatch):
    """The general formula itself (not the plain-CE shortcut) at beta = lambda = 0 against torch's cross-entropy."""
    import oxa.losses

    calls = []
    coefficients = oxa.losses._gce_coefficients
    monkeypatch.setattr(GeneralizedCE, "is_plain_ce", property(lambda self: False))
    monkeypatch.setattr(oxa.losses, "_gce_coefficients", lambda *args: calls.append(1) or coefficients(*args))
    hidden, weight, targets, _, weights = make(seed=2)
    kinds = torch.full((N,), CE)
    zero = fused_token_losses(hidden, weight, targets, kinds, weights, gce=GeneralizedCE(top_k=5), chunk_size=7)
    assert len(calls) == 4  # the general formula ran, once per chunk
    ce = torch.nn.functional.cross_entropy((hidden @ weight.T).double(), targets, reduction="none")
    assert (zero.token_loss.double() - ce).abs().max().item() < 1e-5
    for a, b in zip(grads(zero.loss, hidden, weight), grads((ce * weights).sum(), hidden, weight)):
        assert (a.double() - b).abs().max().item() < 1e-5


@pytest.mark.parametrize("case", ["autocast, bf16 hidden", "autocast, fp32 hidden", "bf16 weights and hidden"])
def test_bf16_matches_fp32_within_bf16_rounding(case):
    """bf16 hidden states beside fp32 weights under autocast (the Trainer's bf16), or everything in bf16 (DeepSpeed's
    and FSDP's bf16): the logits are bf16 as in an unfused bf16 model, the gradients come back in each input's dtype."""
    hidden, weight, targets, kinds, weights = make(seed=5)
    ref_total, _, _ = explicit(hidden, weight, targets, kinds, weights)
    ref_grads = grads(ref_total, hidden, weight)
    h = hidden.detach().to(torch.float32 if "fp32 hidden" in case else torch.bfloat16).requires_grad_()
    w = weight.detach().to(torch.bfloat16 if "bf16 weights" in case else torch.float32).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case.startswith("autocast")):
        out = fused_token_losses(h, w, targets, kinds, weights, chunk_size=5)
    grad_h, grad_w = grads(out.loss, h, w)
    assert grad_h.dtype == h.dtype and grad_w.dtype == w.dtype
    # the same bf16 logits as one unchunked bf16 matmul gives (to its fp32 accumulation order)
    _, bf16_tok, _ = explicit_from_logits((h.detach().bfloat16() @ w.detach().bfloat16().T).double(), targets, kinds, weights)
    assert (out.token_loss.double() - bf16_tok).abs().max().item() < 1e-5
    # against fp32: bf16 rounds logits of size ~15 by up to 0.03 (measured: loss 2e-3 relative, gradients 1.3e-2
    # of their largest entry over 5 seeds)
    assert abs(out.loss.item() - ref_total.item()) < 1e-2 * abs(ref_total.item())
    for ours, ref in zip((grad_h, grad_w), ref_grads):
        assert (ours.double() - ref).abs().max().item() < 3e-2 * ref.abs().max().item()


def test_unlikelihood_finite_and_exact_as_p_goes_to_one():
    """At p_y = 1 - 1e-9 (fp32 rounds p_y to 1): loss = -log(1e-9) exactly, gradient wrt logits = p - q, bounded."""
    vocab, gap = 8, 9 * torch.log(torch.tensor(10.0)).item()
    # logits: target at 0, the other 7 at -gap - log 7  =>  1 - p_y = 7 * e^{-gap - log 7} / (1 + ...) ~ 1e-9
    z = torch.full((1, vocab), -gap - torch.log(torch.tensor(7.0)).item())
    z[0, 3] = 0.0
    logits = z.clone().requires_grad_()
    targets, kinds, weights = torch.tensor([3]), torch.tensor([UL]), torch.ones(1)
    loss, _, grad = chunk_losses(logits.detach().clone(), targets, kinds, weights)
    one_minus_p = 1e-9 / (1 + 1e-9)
    assert torch.isfinite(loss).all() and abs(loss.item() + torch.log(torch.tensor(one_minus_p, dtype=torch.float64)).item()) < 1e-4
    naive = -torch.log1p(-torch.softmax(logits, -1)[0, 3])
    assert not torch.isfinite(naive)  # the textbook form overflows in fp32 here
    # gradient: p_y on the target (~1), -p_y * q_j on the others (q uniform over the 7 others): bounded by 1
    expected = torch.full((vocab,), -(1 - one_minus_p) / 7)
    expected[3] = 1 - one_minus_p
    assert torch.allclose(grad[0], expected, atol=1e-6)
    assert grad.abs().sum().item() <= 2.0 + 1e-6
    # through the fused path too (hidden @ weight.T = z with an identity projection)
    hidden = z.clone().requires_grad_()
    weight = torch.eye(vocab).requires_grad_()
    out = fused_token_losses(hidden, weight, targets, kinds, weights)
    (gh,) = torch.autograd.grad(out.loss, (hidden,))
    assert torch.isfinite(out.loss) and torch.allclose(gh[0], expected, atol=1e-6)


def test_weights_give_per_sequence_and_global_token_means():
    # two CE rows (3 and 1 loss tokens), one UL row (2 tokens), one dummy row
    kinds = torch.tensor([[CE, CE, CE], [CE, IGNORE, IGNORE], [UL, UL, IGNORE], [IGNORE] * 3])
    alpha = 0.1
    w = token_weights(kinds, torch.tensor([0.5, 0.5, 1.0, 0.0]), alpha=alpha)
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0, 0], [5.0, 7.0, 0], [9.0, 9.0, 9.0]])
    per_seq = (2.0 + 4.0) / 2 + alpha * 6.0
    assert abs((w * losses).sum().item() - per_seq) < 1e-6
    w = token_weights(kinds, torch.tensor([1 / 4, 1 / 4, 1 / 2, 0.0]), alpha=alpha, per_sequence=False)
    per_token = (1 + 2 + 3 + 4) / 4 + alpha * (5 + 7) / 2
    assert abs((w * losses).sum().item() - per_token) < 1e-6


def test_no_gradient_needed_gives_values_only():
    hidden, weight, targets, kinds, weights = make(seed=3)
    with torch.no_grad():
        out = fused_token_losses(hidden, weight, targets, kinds, weights, chunk_size=6)
    ref, _, _ = explicit(hidden, weight, targets, kinds, weights)
    assert abs(out.loss.item() - ref.item()) < 1e-5 and not out.loss.requires_grad


def test_accurate_at_a_qwen_sized_vocabulary():
    """fp32 sums over 151,936 entries: entropy and losses within 1e-5 of a float64 computation."""
    g = torch.Generator().manual_seed(4)
    vocab = 151936
    hidden = torch.randn(6, 16, generator=g) * 3
    weight = torch.randn(vocab, 16, generator=g)
    targets = torch.randint(0, vocab, (6,), generator=g)
    kinds = torch.tensor([CE, UL] * 3)
    out = fused_token_losses(hidden, weight, targets, kinds, torch.ones(6), chunk_size=4)
    _, ref_tok, ref_ent = explicit(hidden, weight, targets, kinds, torch.ones(6))
    assert (out.entropy.double() - ref_ent).abs().max().item() < 1e-5
    assert (out.token_loss.double() - ref_tok).abs().max().item() < 1e-5
