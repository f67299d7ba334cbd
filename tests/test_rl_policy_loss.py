"""The policy losses against hand computations on a 2 x 5 batch written out token by token."""

from __future__ import annotations

import math

import pytest
import torch

from oxa.rl.policy_loss import covariance, low_var_kl, policy_loss

# row 0 has advantage +2 (5 tokens), row 1 advantage -2 (4 tokens and one pad)
LOGP = [[-0.2, -0.5, -3.0, -0.1, -2.5], [-3.0, -2.8, -0.3, -3.5, -1.0]]
# old = logp + delta: row 0 token 3 has ratio e^0.5 > 1.2 (A > 0: clipped), row 1 token 0 ratio e^-0.5 < 0.8
# (A < 0: clipped), row 1 token 2 ratio e^1.7 = 5.5 (A < 0: past the dual clip c = 3)
DELTA = [[0.03, -0.02, 0.04, -0.5, 0.01], [0.5, 0.02, -1.7, -0.03, 0.0]]
ADV = [2.0, -2.0]
MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def tensors(requires_grad: bool = False):
    logp = torch.tensor(LOGP, dtype=torch.float64, requires_grad=requires_grad)
    old = torch.tensor(LOGP, dtype=torch.float64) + torch.tensor(DELTA, dtype=torch.float64)
    return logp, old, torch.tensor(ADV, dtype=torch.float64)[:, None], torch.tensor(MASK, dtype=torch.bool)


def valid_tokens():
    return [(b, t) for b in range(2) for t in range(5) if MASK[b][t]]


def ratio(b, t):
    return math.exp(LOGP[b][t] - (LOGP[b][t] + DELTA[b][t]))


def hand_cov():
    """Cov_i = (A_i - mean A)(logp_i - mean logp) over the 9 valid tokens."""
    tokens = valid_tokens()
    mean_a = sum(ADV[b] for b, _ in tokens) / len(tokens)
    mean_lp = sum(LOGP[b][t] for b, t in tokens) / len(tokens)
    return {(b, t): (ADV[b] - mean_a) * (LOGP[b][t] - mean_lp) for b, t in tokens}


def hand_clipped(b, t, eps=0.2):
    r, a = ratio(b, t), ADV[b]
    return -a * min(max(r, 1 - eps), 1 + eps) > -a * r


def test_vanilla_matches_ppo_clip_with_dual_clip():
    logp, old, adv, mask = tensors()
    out = policy_loss(logp, old, adv, mask, mode="vanilla")
    for b, t in valid_tokens():
        r, a = ratio(b, t), ADV[b]
        expected = max(-a * r, -a * min(max(r, 0.8), 1.2))
        if a < 0:
            expected = min(expected, -a * 3.0)
        assert out.loss[b, t].item() == pytest.approx(expected, rel=1e-12)
        assert bool(out.clipped[b, t]) == hand_clipped(b, t)
    assert out.loss[1, 4].item() == 0.0 and not out.mask[1, 4]
    assert out.loss[1, 2].item() == pytest.approx(6.0)  # -A * c: the dual clip bounds a negative advantage's loss
    assert out.clipped.sum().item() == 2  # row 1 token 2 is not PPO-clipped (A < 0, r > 1): the dual clip binds


def test_covariance_matches_hand_computation():
    logp, _, adv, mask = tensors()
    cov = covariance(logp, adv, mask)
    for (b, t), expected in hand_cov().items():
        assert cov[b, t].item() == pytest.approx(expected, rel=1e-12)


def test_clip_cov_selects_the_right_number_of_candidates_and_zeroes_exactly_their_gradient():
    cov = hand_cov()
    candidates = {bt for bt, c in cov.items() if 1.0 < c < 5.0 and not hand_clipped(*bt)}
    assert candidates == {(0, 0), (0, 1), (1, 1), (1, 3)}  # the batch was built to have four

    logp, old, adv, mask = tensors(requires_grad=True)
    out = policy_loss(logp, old, adv, mask, mode="clip-cov", clip_cov_ratio=0.25,
                      generator=torch.Generator().manual_seed(0))
    chosen = {(b, t) for b, t in valid_tokens() if out.cov_selected[b, t]}
    assert len(chosen) == max(int(0.25 * 9), 1) == 2
    assert chosen <= candidates
    out.loss.sum().backward()
    grad = logp.grad
    for b, t in valid_tokens():
        if (b, t) in chosen or hand_clipped(b, t):
            assert grad[b, t].item() == 0.0
            if (b, t) in chosen:
                assert out.loss[b, t].item() == 0.0
        else:  # the PPO loss -A r, whose gradient is -A r
            assert grad[b, t].item() == pytest.approx(-ADV[b] * ratio(b, t), rel=1e-12)

    # the defaults (r = 2e-4, lb 1, ub 5) select max(int(2e-4 * 9), 1) = 1 token; other seeds, other tokens
    draws = set()
    for seed in range(12):
        default = policy_loss(*tensors(), mode="clip-cov", generator=torch.Generator().manual_seed(seed))
        picked = {(b, t) for b, t in valid_tokens() if default.cov_selected[b, t]}
        assert len(picked) == 1 and picked <= candidates
        draws |= picked
    assert len(draws) > 1


def test_kl_cov_penalises_the_top_covariance_tokens():
    cov = hand_cov()
    top = sorted(cov, key=cov.get, reverse=True)[: max(int(9 * 0.25), 1)]
    logp, old, adv, mask = tensors()
    out = policy_loss(logp, old, adv, mask, mode="kl-cov", kl_cov_ratio=0.25, kl_cov_coef=0.7)
    assert {(b, t) for b, t in valid_tokens() if out.cov_selected[b, t]} == set(top) == {(1, 3), (0, 3)}
    for b, t in valid_tokens():
        expected = -ADV[b] * ratio(b, t)  # no clip in KL-Cov
        if (b, t) in top:
            expected += 0.7 * abs(DELTA[b][t])
        assert out.loss[b, t].item() == pytest.approx(expected, rel=1e-12)
    assert not out.clipped.any()


@pytest.mark.parametrize("mode", ["vanilla", "clip-cov", "kl-cov"])
def test_off_policy_tokens_get_luffys_shaped_loss_outside_the_clip(mode):
    off = torch.zeros(2, 5, dtype=torch.bool)
    off[0, 3] = off[1, 0] = True  # two tokens that were clipped as on-policy tokens
    logp, old, adv, mask = tensors(requires_grad=True)
    out = policy_loss(logp, old, adv, mask, mode=mode, off_policy=off, off_policy_gamma=0.1,
                      generator=torch.Generator().manual_seed(0))
    out.loss.sum().backward()
    for b, t in [(0, 3), (1, 0)]:
        p, a = math.exp(LOGP[b][t]), ADV[b]
        assert out.loss[b, t].item() == pytest.approx(-a * p / (p + 0.1), rel=1e-12)
        # d/dlogp [-A p/(p+g)] = -A g p / (p+g)^2: a gradient despite the ratio being far from 1
        assert logp.grad[b, t].item() == pytest.approx(-a * 0.1 * p / (p + 0.1) ** 2, rel=1e-10)
        assert not out.clipped[b, t] and not out.cov_selected[b, t] and out.mask[b, t]

    masked = policy_loss(*tensors(), mode=mode, off_policy=off, off_policy_mode="mask")
    assert masked.loss[0, 3].item() == 0.0 and not masked.mask[0, 3] and not masked.mask[1, 0]
    assert masked.mask.sum().item() == 7


def test_off_policy_tokens_are_left_out_of_the_covariance():
    off = torch.zeros(2, 5, dtype=torch.bool)
    off[1, 3] = True  # the top-covariance token among all nine
    out = policy_loss(*tensors(), mode="kl-cov", kl_cov_ratio=0.25, off_policy=off)
    tokens = [bt for bt in valid_tokens() if bt != (1, 3)]
    mean_a = sum(ADV[b] for b, _ in tokens) / len(tokens)
    mean_lp = sum(LOGP[b][t] for b, t in tokens) / len(tokens)
    cov = {(b, t): (ADV[b] - mean_a) * (LOGP[b][t] - mean_lp) for b, t in tokens}
    top = set(sorted(cov, key=cov.get, reverse=True)[: max(int(8 * 0.25), 1)])
    assert {(b, t) for b, t in valid_tokens() if out.cov_selected[b, t]} == top


def test_low_var_kl_is_k3_clamped():
    logp = torch.tensor([-1.0, -2.0, -0.5, -30.0], dtype=torch.float64)
    ref = torch.tensor([-1.0, -1.5, -0.9, -1.0], dtype=torch.float64)
    kl = low_var_kl(logp, ref)
    for i in range(3):
        d = ref[i].item() - logp[i].item()
        assert kl[i].item() == pytest.approx(math.exp(d) - d - 1, rel=1e-12)
    assert kl[0].item() == 0.0 and kl[3].item() == 10.0  # equal policies: 0; exp(29) - 30: clamped at 10
