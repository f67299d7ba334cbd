"""RLVR: GRPO on TRL with the paper's verifiable reward, Clip-Cov / KL-Cov, per-step metrics and held-out
evaluation (`oxa rl`). ``train_rl`` is the library entry point; ``RLConfig`` holds every setting."""

from oxa.rl.config import RLConfig, RLEvalConfig
from oxa.rl.policy_loss import TokenLoss, low_var_kl, policy_loss
from oxa.rl.rollout import RolloutBatch, RolloutTransform
from oxa.rl.run import train_rl

__all__ = ["RLConfig", "RLEvalConfig", "RolloutBatch", "RolloutTransform", "TokenLoss", "low_var_kl", "policy_loss",
           "train_rl"]
