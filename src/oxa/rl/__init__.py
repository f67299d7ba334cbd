"""RLVR: GRPO on TRL with the paper's verifiable reward, Clip-Cov / KL-Cov, per-step metrics and held-out
evaluation (`oxa rl`). ``train_rl`` is the library entry point; ``RLConfig`` holds every setting.

The names below are imported on first use, so that ``oxa --help`` and the verl export's settings do not
load torch."""

from __future__ import annotations

import importlib

_HOMES = {"RLConfig": "config", "RLEvalConfig": "config", "TokenLoss": "policy_loss", "low_var_kl": "policy_loss",
          "RolloutBatch": "rollout", "RolloutTransform": "rollout", "train_rl": "run"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"oxa.rl.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'oxa.rl' has no attribute {name!r}")
