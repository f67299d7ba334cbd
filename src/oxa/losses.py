"""Token losses of OXA computed from hidden states in chunks: CE, unlikelihood, generalized CE, entropy.

The objective of the OXA paper (section 3.2) is ``L = L_CE + alpha * L_UL`` where, for a token ``y`` with
logits ``z`` and ``p = softmax(z)``:

* cross-entropy          ``ce(y)  = lse(z) - z_y``                      grad wrt z: ``p - onehot(y)``
* unlikelihood           ``ul(y)  = -log(1 - p_y) = lse(z) - lse(z_{-y})``  grad wrt z: ``p - q``

where ``lse(z_{-y})`` is the log-sum-exp of every logit except ``y`` and ``q = softmax(z_{-y})`` (with
``q_y = 0``) is the distribution renormalised without ``y``. Written this way the UL loss needs no clamp
and stays exact as ``p_y -> 1`` (``1 - p_y`` is never formed). Its gradient with respect to the logits
stays bounded too: ``p_y`` on the target and ``-p_y * q_j`` elsewhere (appendix A.1's ``-p_j p_y/(1-p_y)``,
since ``q_j = p_j/(1-p_y)``); each entry is at most 1 in magnitude and the L1 norm at most 2. What grows
like ``1/(1-p_y)`` is the gradient with respect to the *probability*, and the loss value itself, which
is why alpha is small. (A clamp ``p <= 1 - 1e-6`` as in the reference code instead zeroes the gradient of
exactly the most confident errors.)

* generalized CE (the "Diversity or Precision" objective, arXiv 2512.22955; our reading of its abstract):
  next-token prediction as a one-step policy gradient with stop-gradient coefficients ``c``:
  ``gce = -sum_j c_j log p_j`` with ``c_y = p_y^(1 - (1 - p_y)^beta)`` (positive reward scaling) and
  ``c_j = lambda_j * p_j`` for ``j != y`` (on-policy weight times the reward of a wrong token), with
  ``lambda_j = lambda_top`` when ``j`` is among the ``top_k`` logits and ``lambda_tail`` otherwise.
  Its gradient is ``(sum_j c_j) p - c``. ``beta = lambda_top = lambda_tail = 0`` gives ``c = onehot(y)``:
  plain CE, exactly.

The full ``[tokens x vocabulary]`` fp32 logits of a long batch are tens of GB (32k tokens x 152k vocab =
20 GB), so :func:`fused_token_losses` walks over the tokens in chunks: per chunk it forms the logits, the
per-token loss and entropy, and -- because the loss is a fixed weighted sum of token losses -- also the
gradient with respect to the logits, which it immediately turns into gradients for the hidden states
and the output projection. Nothing of size ``tokens x vocabulary`` outlives a chunk and nothing is
recomputed in backward (which only scales the stored gradients by the incoming scalar).

Precision: the matmuls run in autocast's dtype where autocast is on (the Trainer's bf16 around fp32 weights),
else in the inputs' dtype (bf16 weights under DeepSpeed's or FSDP's bf16); the logits are upcast to fp32 for the
softmax and the loss, which thus equals an unfused bf16 model's. The gradients come back in each input's dtype;
the output projection's is summed over the chunks in fp32.

Under FSDP or ZeRO-3 the output projection is whole only inside its own forward pass: the trainer calls this
function from there (:mod:`oxa.training.loss_head`).

This module imports only torch, so it can be copied into any trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

IGNORE, CE, UL = -1, 0, 1
"""Token kinds: not trained on, pushed up with (generalized) cross-entropy, pushed down with unlikelihood."""

MIN_CHUNK = 32
"""Default chunk: ``max(MIN_CHUNK, N * H / V)`` tokens, so a chunk's logits take about as much memory as
the hidden states themselves (Liger-Kernel's rule): 42 tokens for 4,096 tokens at hidden 1,536 and
vocabulary 151,936 (Qwen2.5-Math-1.5B), 332 for 32,768 tokens."""


@dataclass(frozen=True)
class GeneralizedCE:
    """Settings of the generalized cross-entropy; all zero (the default) is plain CE."""

    beta: float = 0.0
    lambda_top: float = 0.0
    lambda_tail: float = 0.0
    top_k: int = 100

    @property
    def is_plain_ce(self) -> bool:
        return self.beta == 0.0 and self.lambda_top == 0.0 and self.lambda_tail == 0.0


class TokenLosses(NamedTuple):
    loss: torch.Tensor  # scalar sum_t weight_t * loss_t; the only differentiable output
    token_loss: torch.Tensor  # [N] fp32 per-token loss (CE, GCE or UL by kind; 0 where ignored)
    entropy: torch.Tensor  # [N] fp32 entropy of the predictive distribution at each token


def chunk_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    kinds: torch.Tensor,
    weights: torch.Tensor,
    gce: GeneralizedCE | None = None,
    *,
    with_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token loss, entropy and ``d(sum_t weight_t loss_t)/d logits`` for fp32 ``logits`` [n, V].

    ``logits`` is used as scratch space (shifted by its row maximum -- every quantity here is
    shift-invariant -- and finally overwritten), and the gradient is written into the softmax buffer,
    so one chunk needs two (three with UL rows) ``n x V`` buffers.
    """
    logits.sub_(logits.amax(dim=-1, keepdim=True))
    p = torch.exp(logits)
    total = p.sum(-1)
    lse = total.log()  # log-sum-exp of the shifted logits (>= 0: the maximum contributes exp(0) = 1)
    p.div_(total[:, None])
    z_y = logits.gather(1, targets[:, None]).squeeze(1)
    loss = torch.zeros_like(lse)
    is_ce, is_ul = kinds == CE, kinds == UL
    ul_rows, ce_rows = is_ul.nonzero().squeeze(1), is_ce.nonzero().squeeze(1)
    plain_ce = gce is None or gce.is_plain_ce

    q = None
    if len(ul_rows):
        # shifted again by their own maximum, so their sum never underflows however close p_y is to 1
        others = logits[ul_rows].scatter_(1, targets[ul_rows, None], float("-inf"))  # z without the target
        top = others.amax(dim=-1, keepdim=True)
        q = others.sub_(top).exp_()
        total_others = q.sum(-1)
        loss[ul_rows] = lse[ul_rows] - (total_others.log() + top.squeeze(1))  # lse(z) - lse(z_{-y})
        q.div_(total_others[:, None])  # softmax without the target, q_y = 0

    c = None
    if len(ce_rows):
        if plain_ce:
            loss[ce_rows] = lse[ce_rows] - z_y[ce_rows]
        else:
            z = logits[ce_rows]
            c = _gce_coefficients(z, p[ce_rows], targets[ce_rows], lse[ce_rows], z_y[ce_rows], gce)
            loss[ce_rows] = c.sum(-1) * lse[ce_rows] - z.mul_(c).sum(-1)

    # H = lse - sum_j p_j z_j; an elementwise product summed pairwise (an fp32 dot product over 152k
    # entries, as einsum/bmm computes it, is ~1e-3 off); the logits are not needed any more
    entropy = lse - logits.mul_(p).sum(-1)
    if not with_grad:
        return loss, entropy, None

    if q is not None:
        p.index_add_(0, ul_rows, q, alpha=-1.0)  # UL: p - q
    if len(ce_rows):
        if plain_ce:
            p[ce_rows, targets[ce_rows]] -= 1.0  # CE: p - onehot(y)
        else:
            p[ce_rows] = c.sum(-1, keepdim=True) * p[ce_rows] - c  # GCE: (sum c) p - c
    p.mul_((weights * (is_ce | is_ul)).to(p.dtype)[:, None])  # ignored tokens get no gradient
    return loss, entropy, p


def _gce_coefficients(z, p, y, lse, z_y, gce: GeneralizedCE) -> torch.Tensor:
    """Stop-gradient coefficients ``c`` of ``-sum_j c_j log p_j`` (see the module docstring)."""
    log_py = z_y - lse
    one_minus = (-torch.expm1(log_py)).clamp_min(torch.finfo(z.dtype).tiny)
    w = torch.exp((1.0 - one_minus.pow(gce.beta)) * log_py)  # p_y^(1-(1-p_y)^beta), 1 at beta = 0
    lam = torch.full_like(z, gce.lambda_tail)
    if gce.top_k > 0 and gce.lambda_top != gce.lambda_tail:
        top = z.topk(min(gce.top_k, z.shape[-1]), dim=-1).indices
        lam.scatter_(1, top, gce.lambda_top)
    c = lam.mul_(p)
    c.scatter_(1, y[:, None], w[:, None])
    return c


class _FusedTokenLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, kinds, weights, gce, chunk_size):
        n = hidden.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with_grad = want_h or want_w
        compute = _compute_dtype(hidden, weight)
        token_loss = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros_like(token_loss)
        grad_h = torch.empty_like(hidden) if want_h else None
        # the projection's gradient is summed over the chunks in one fp32 V x H buffer (with fp32 weights, the
        # gradient itself) and rounded to the weight's dtype once at the end: bf16 sums over ~V/H chunks would lose bits
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        with torch.autocast(hidden.device.type, enabled=False):  # the dtypes below are explicit
            w = weight.to(compute)
            for start in range(0, n, chunk_size):
                sl = slice(start, min(start + chunk_size, n))
                h = hidden[sl].to(compute)
                logits = (h @ w.T).float()
                loss, ent, dlogits = chunk_losses(logits, targets[sl], kinds[sl], weights[sl], gce, with_grad=with_grad)
                del logits
                token_loss[sl], entropy[sl] = loss, ent
                if not with_grad:
                    continue
                dlogits = dlogits.to(compute)  # bf16/fp16 matmuls still sum in fp32 inside
                if want_h:
                    grad_h[sl] = dlogits @ w
                if want_w and compute == torch.float32:
                    grad_w.addmm_(dlogits.T, h)
                elif want_w:  # this chunk's share rounded once (as one matmul over all tokens would), summed in fp32
                    grad_w.add_(dlogits.T @ h)
        total = (token_loss * weights.float()).sum()
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(token_loss, entropy)
        return total, token_loss, entropy

    @staticmethod
    def backward(ctx, g_total, _g_loss, _g_entropy):
        grad_h, grad_w = ctx.saved_tensors
        scale_needed = not bool(torch.all(g_total == 1.0))
        if scale_needed:  # in place: a second buffer the size of the output projection is what we avoid
            grad_h = grad_h.mul_(g_total.to(grad_h.dtype)) if grad_h is not None else None
            grad_w = grad_w.mul_(g_total.to(grad_w.dtype)) if grad_w is not None else None
        return grad_h, grad_w, None, None, None, None, None


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmuls' dtype: autocast's where it is on (as the output layer itself would run), else the inputs'."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def fused_token_losses(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    kinds: torch.Tensor,
    weights: torch.Tensor,
    *,
    gce: GeneralizedCE | None = None,
    chunk_size: int | None = None,
) -> TokenLosses:
    """``sum_t weights[t] * loss_t`` over tokens whose logits are ``hidden @ weight.T``, never all at once.

    ``hidden`` [N, H] are the final hidden states of the predicting positions, ``weight`` [V, H] the output
    projection (``model.get_output_embeddings().weight``), ``targets`` [N] the token ids, ``kinds`` [N] one
    of :data:`CE`, :data:`UL`, :data:`IGNORE` per token, ``weights`` [N] each token's coefficient in the
    total (normalisation and alpha, see :func:`token_weights`). ``chunk_size`` tokens are processed at a
    time (default: see :data:`MIN_CHUNK`). The backward pass may be run once.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden [N, H] and weight [V, H] expected, got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    n = hidden.shape[0]
    if not (targets.shape == kinds.shape == weights.shape == (n,)):
        raise ValueError("targets, kinds and weights must each hold one entry per hidden state")
    chunk = chunk_size or max(MIN_CHUNK, -(-n * weight.shape[1] // weight.shape[0]))
    total, token_loss, entropy = _FusedTokenLoss.apply(hidden, weight, targets, kinds, weights, gce, chunk)
    return TokenLosses(total, token_loss, entropy)


def token_weights(
    kinds: torch.Tensor,
    row_norm: torch.Tensor,
    *,
    alpha: float,
    per_sequence: bool = True,
) -> torch.Tensor:
    """Each token's coefficient in ``L = L_CE + alpha * L_UL`` for a padded batch ``kinds`` [B, T].

    ``row_norm`` [B] is what one row counts in its loss over the whole optimizer step: ``1/M`` for the
    paper's per-sequence mean (M sequences of that type in the step; each row's tokens then share it
    equally), or ``1/K`` for a global token mean (K tokens of that type in the step; every token gets it).
    Summed over all micro-batches and processes of a step, the weighted token losses give exactly
    ``mean_seq mean_tok ce + alpha * mean_seq mean_tok ul`` (or the token-mean version).
    """
    counted = kinds != IGNORE
    norm = row_norm[:, None].expand_as(kinds).to(torch.float32)
    if per_sequence:
        n_tok = counted.sum(1, keepdim=True).clamp_min(1)
        norm = norm / n_tok
    coef = torch.where(kinds == UL, torch.full_like(norm, alpha), torch.ones_like(norm))
    return torch.where(counted, norm * coef, torch.zeros_like(norm))
