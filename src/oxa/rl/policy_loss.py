"""Per-token policy-gradient losses: PPO clip (verl's "vanilla"), Clip-Cov, KL-Cov, and LUFFY's shaped
objective for off-policy tokens; plus verl's low-variance KL to the reference model.

Every tensor is [B, T] over response tokens (T = the padded response length); ``mask`` marks real response
tokens and ``advantages`` broadcast from [B, 1]. The functions return per-token losses; how they are
summed into one number (token mean over the step, ...) is the trainer's business.

With r = exp(logp - logp_old) and A the advantage (verl, ``trainer/ppo/core_algos.py``):

* vanilla:  max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high)), and for A < 0 at most -A c (dual clip, c = 3).
* clip-cov (Cui et al. 2025): Cov_i = (A_i - mean A)(logp_i - mean logp) over the valid tokens. Among the
  tokens not already clipped with lb < Cov_i < ub, max(int(ratio * N), 1) are drawn at random (N = valid
  tokens) and their loss - so their gradient - is set to zero; the rest get max(-A r, -A clip(r)).
* kl-cov: the top max(int(ratio * N), 1) tokens by Cov get -A r + coef |logp - logp_old|, the rest -A r
  (no clip).
* off-policy tokens (SCOPE / LUFFY): -A f(p) with f(p) = p / (p + gamma), p = exp(logp), outside the clip
  and outside the covariance statistics; or no loss at all ("mask").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

PolicyLossName = Literal["vanilla", "clip-cov", "kl-cov"]
OffPolicyMode = Literal["shape", "mask"]
LOG_RATIO_LIMIT = 20.0  # verl clamps log r to [-20, 20] before exp


@dataclass(frozen=True)
class TokenLoss:
    """The per-token loss and what it did, all [B, T]."""

    loss: torch.Tensor  # zero outside ``mask``
    mask: torch.Tensor  # the tokens that count (response tokens, minus masked-out off-policy ones)
    clipped: torch.Tensor  # the PPO clip is active (its gradient is zero): -A clip(r) > -A r
    cov_selected: torch.Tensor  # Clip-Cov: loss zeroed; KL-Cov: KL penalty applied


def ppo_terms(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, *, clip_low: float,
              clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))."""
    ratio = torch.exp(torch.clamp(logp - old_logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    return -advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)


def covariance(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cov_i = (A_i - mean A)(logp_i - mean logp), the means over the tokens in ``mask``; 0 elsewhere."""
    a = advantages.detach().expand_as(logp)
    lp = logp.detach()
    n = mask.sum().clamp(min=1)
    mean_a = (a * mask).sum() / n
    mean_lp = (lp * mask).sum() / n
    return torch.where(mask, (a - mean_a) * (lp - mean_lp), torch.zeros_like(lp))


def selection_count(ratio: float, n_valid: int) -> int:
    """How many tokens Clip-Cov / KL-Cov act on: max(int(ratio * N), 1)."""
    return max(int(ratio * n_valid), 1)


def clip_cov_select(cov: torch.Tensor, candidates: torch.Tensor, n_valid: int, *, ratio: float, lb: float, ub: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The tokens whose loss Clip-Cov zeroes: ``selection_count(ratio, n_valid)`` drawn uniformly without
    replacement from ``candidates & (lb < cov < ub)`` (all of them if there are fewer)."""
    pool = torch.nonzero((candidates & (cov > lb) & (cov < ub)).flatten()).squeeze(-1)
    k = min(selection_count(ratio, n_valid), pool.numel())
    order = torch.randperm(pool.numel(), generator=generator, device="cpu").to(pool.device)
    chosen = torch.zeros(cov.numel(), dtype=torch.bool, device=cov.device)
    chosen[pool[order[:k]]] = True
    return chosen.view_as(cov)


def kl_cov_select(cov: torch.Tensor, mask: torch.Tensor, *, ratio: float) -> torch.Tensor:
    """The ``selection_count(ratio, N)`` tokens of ``mask`` with the largest covariance."""
    n_valid = int(mask.sum())
    chosen = torch.zeros(cov.numel(), dtype=torch.bool, device=cov.device)
    if n_valid:
        masked = torch.where(mask, cov, torch.full_like(cov, -torch.inf)).flatten()
        chosen[torch.topk(masked, selection_count(ratio, n_valid)).indices] = True
    return chosen.view_as(cov)


def shaped_off_policy_loss(logp: torch.Tensor, advantages: torch.Tensor, gamma: float) -> torch.Tensor:
    """LUFFY's policy shaping for tokens the policy did not sample: -A p / (p + gamma), p = exp(logp)."""
    p = torch.exp(logp)
    return -advantages * p / (p + gamma)


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """verl's ``low_var_kl`` (Schulman's k3): exp(ref - logp) - (ref - logp) - 1, log ratio clamped to
    [-20, 20] and the estimate to [-10, 10]."""
    d = torch.clamp(ref_logp - logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.clamp(torch.exp(d) - d - 1, -10.0, 10.0)


def loss_mask(mask: torch.Tensor, off_policy: torch.Tensor | None, off_policy_mode: OffPolicyMode) -> torch.Tensor:
    """The tokens whose loss counts: the response tokens, minus the off-policy ones when they are masked out."""
    mask = mask.bool()
    if off_policy is None or off_policy_mode == "shape":
        return mask
    if off_policy_mode == "mask":
        return mask & ~off_policy.bool()
    raise ValueError(f"unknown off-policy mode {off_policy_mode!r}; choose shape or mask")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    mode: PolicyLossName = "vanilla",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float | None = 3.0,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    kl_cov_ratio: float = 2e-3,
    kl_cov_coef: float = 1.0,
    off_policy: torch.Tensor | None = None,
    off_policy_mode: OffPolicyMode = "shape",
    off_policy_gamma: float = 0.1,
    generator: torch.Generator | None = None,
) -> TokenLoss:
    """The per-token loss of ``mode`` (see the module docstring). ``off_policy`` marks tokens that were
    not sampled from the policy (a salvaged rollout's corrected steps); without it every token is on-policy."""
    mask = mask.bool()
    advantages = advantages if advantages.dim() == 2 else advantages.unsqueeze(-1)
    off = torch.zeros_like(mask) if off_policy is None else off_policy.bool() & mask
    on = mask & ~off
    n_on = int(on.sum())
    pg1, pg2 = ppo_terms(logp, old_logp, advantages, clip_low=clip_low, clip_high=clip_high)
    clipped = (pg2 > pg1) & on
    selected = torch.zeros_like(mask)
    if mode == "vanilla":
        loss = torch.maximum(pg1, pg2)
        if clip_c is not None:
            loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * clip_c), loss)
    elif mode == "clip-cov":
        cov = covariance(logp, advantages, on)
        selected = clip_cov_select(cov, on & ~clipped, n_on, ratio=clip_cov_ratio, lb=clip_cov_lb, ub=clip_cov_ub,
                                   generator=generator)
        loss = torch.maximum(pg1, pg2).masked_fill(selected, 0.0)
    elif mode == "kl-cov":
        cov = covariance(logp, advantages, on)
        selected = kl_cov_select(cov, on, ratio=kl_cov_ratio)
        clipped = torch.zeros_like(mask)  # KL-Cov has no ratio clip
        loss = torch.where(selected, pg1 + kl_cov_coef * (logp - old_logp).abs(), pg1)
    else:
        raise ValueError(f"unknown policy loss {mode!r}; choose vanilla, clip-cov or kl-cov")
    counted = loss_mask(mask, off, off_policy_mode)
    if off_policy_mode == "shape":
        loss = torch.where(off, shaped_off_policy_loss(logp, advantages, off_policy_gamma), loss)
    return TokenLoss(loss=loss * counted, mask=counted, clipped=clipped, cov_selected=selected)
