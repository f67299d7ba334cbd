"""Per-step RL metrics: what is summed between two logs, and ``OUTPUT_DIR/rl_metrics.jsonl``.

One row per logged optimizer step, with the keys of INTERFACES.md (read by ``oxa report``):

* from the rollout batch (all processes' rollouts): ``reward_mean``, ``reward_std``,
  ``frac_zero_std_groups`` (groups whose rollouts all scored the same: no learning signal),
  ``response_length`` (tokens, EOS included), ``truncated_share`` (rollouts cut at the token budget),
  ``reward_status/<status>`` counts;
* from the update (summed over micro-batches and processes, then divided): ``entropy`` - verl's
  ``actor/entropy``: the token mean over every response token of the step of the policy's entropy at the
  rollout temperature, computed in the loss's forward pass, which precedes the step's optimizer update;
  ``kl`` (token mean of the k3 estimate to the reference), ``clip_fraction`` (tokens whose PPO clip is
  active) and ``cov_selected_tokens`` (tokens Clip-Cov / KL-Cov acted on, per step);
* wall seconds per step split into ``seconds_generation``, ``seconds_grading`` and ``seconds_update``
  (everything else: log-probabilities, forward/backward, optimizer), plus ``lr``.

TRL itself logs entropy as the mean over micro-batches of per-micro-batch token means, which weighs a
micro-batch of short responses like one of long ones; here every token counts once.
Evaluation rows hold ``step`` and ``eval/<benchmark>/pass@k``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from oxa.io import dumps, read_records, write_records

UPDATE_SUMS = ("entropy", "tokens", "kl", "clipped", "cov_selected", "micro_batches")
ROLLOUT_MEANS = ("reward_mean", "reward_std", "frac_zero_std_groups", "response_length", "truncated_share")


class StepMetrics:
    """Sums since the last log. Rollout values are already global (every process holds the same);
    update sums are this process's and are reduced over processes when the row is made."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.update = torch.zeros(len(UPDATE_SUMS), dtype=torch.float64, device=self.device)
        self.rollouts: dict[str, list[float]] = {k: [] for k in ROLLOUT_MEANS}
        self.extra: dict[str, list[float]] = {}
        self.statuses: Counter[str] = Counter()
        self.seconds = {"generation": 0.0, "grading": 0.0, "eval": 0.0}

    def add_rollouts(self, rewards: torch.Tensor, group_size: int, lengths: torch.Tensor, truncated: torch.Tensor,
                     statuses: Counter[str], extra: dict[str, float]) -> None:
        """One rollout batch: its summed rewards [rows] (groups of ``group_size`` contiguous rows; NaN marks a
        padding row, which is not a rollout), and the rollouts' lengths and truncation flags."""
        groups = rewards.view(-1, group_size)
        pad = torch.isnan(groups)
        flat = groups.masked_fill(pad, -torch.inf).amax(dim=1) == groups.masked_fill(pad, torch.inf).amin(dim=1)
        real = rewards[~torch.isnan(rewards)]
        values = {
            "reward_mean": real.mean(),
            "reward_std": real.std() if real.numel() > 1 else torch.zeros(()),
            "frac_zero_std_groups": flat.float().mean(),
            "response_length": lengths.float().mean(),
            "truncated_share": truncated.float().mean(),
        }
        for k, v in values.items():
            self.rollouts[k].append(float(v))
        for k, v in extra.items():
            self.extra.setdefault(k, []).append(float(v))
        self.statuses.update(statuses)

    def add_update(self, *, entropy: torch.Tensor, tokens: torch.Tensor, kl: torch.Tensor | None,
                   clipped: torch.Tensor, cov_selected: torch.Tensor) -> None:
        """One micro-batch: sums over its response tokens."""
        zero = torch.zeros((), device=tokens.device)
        values = (entropy, tokens, zero if kl is None else kl, clipped, cov_selected, torch.ones((), device=tokens.device))
        self.update += torch.stack([v.detach().to(torch.float64) for v in values]).to(self.device)

    def row(self, update_sums: torch.Tensor, *, steps: int, seconds: float, with_kl: bool) -> dict[str, float]:
        """The row for ``steps`` optimizer steps, given the update sums reduced over processes."""
        s = dict(zip(UPDATE_SUMS, update_sums.tolist()))
        tokens = max(s["tokens"], 1.0)
        row: dict[str, float] = {k: sum(v) / len(v) for k, v in self.rollouts.items() if v}
        row.update({"entropy": s["entropy"] / tokens, "clip_fraction": s["clipped"] / tokens,
                    "cov_selected_tokens": s["cov_selected"] / steps})
        if with_kl:
            row["kl"] = s["kl"] / tokens
        generation, grading = self.seconds["generation"], self.seconds["grading"]
        row.update({"seconds_generation": generation / steps, "seconds_grading": grading / steps,
                    "seconds_update": max(seconds - generation - grading - self.seconds["eval"], 0.0) / steps})
        row.update({f"reward_status/{k}": v for k, v in sorted(self.statuses.items())})
        row.update({k: sum(v) / len(v) for k, v in self.extra.items()})
        return row


class MetricsFile:
    """``rl_metrics.jsonl``: rows appended as they come; on resume, rows after the resumed step are dropped
    (they are logged again), so the file never holds a step twice."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        if self.path.exists():
            write_records(self.path, [r for r in read_records(self.path) if r["step"] <= step])

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps(row) + "\n")

    def rows(self) -> list[dict]:
        return read_records(self.path) if self.path.exists() else []
