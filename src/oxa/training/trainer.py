"""The OXA trainer: transformers' Trainer with the composer's batches and the chunked CE + alpha * UL loss.

Only three things differ from a plain Trainer, so accelerate, DDP, DeepSpeed ZeRO-2/3, FSDP, checkpointing
and ``report_to`` work unchanged:

* the train dataloader yields this process's micro-batches from :class:`BatchComposer` (not re-sharded
  by accelerate: the composer already knows every process's share);
* ``compute_loss`` calls the (wrapped) model with the batch's targets handed to the output layer, which
  computes :func:`oxa.losses.fused_token_losses` inside its own forward, where FSDP and ZeRO-3 have gathered
  its weight (:mod:`oxa.training.loss_head`); no logits of the whole batch are ever formed. The loss of a
  micro-batch is its share of the whole step's loss (each row carries its step normaliser), multiplied by
  the number of processes because DDP / DeepSpeed / FSDP average gradients across processes; hence
  ``loss_is_scaled_for_ga`` -- the Trainer must not divide by the accumulation steps again;
* ``log`` adds ce_loss, ul_loss, weighted_ul_loss, entropy per loss type (token-weighted over that
  type's tokens only) and tokens per second, summed over processes.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from oxa.losses import CE, IGNORE, UL, GeneralizedCE, token_weights
from oxa.training.composer import BatchComposer, ComposedBatchSampler
from oxa.training.loss_head import LossHead

METRICS = ("ce_loss", "ul_loss", "ce_entropy_sum", "ce_tokens", "ul_entropy_sum", "ul_tokens", "tokens", "ce_weight",
           "ul_weight")


class _EpochDataLoader(DataLoader):
    """A DataLoader whose ``set_epoch`` reaches the composer's batch sampler (the Trainer calls it)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


class OxaTrainer(Trainer):
    loss_is_scaled_for_ga = True

    def __init__(self, *args, composer: BatchComposer, alpha: float, per_sequence: bool = True,
                 gce: GeneralizedCE | None = None, loss_chunk_size: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.composer, self.alpha, self.per_sequence = composer, alpha, per_sequence
        self.loss_head = LossHead(self.model, gce=gce, chunk_size=loss_chunk_size)
        self._output_checked = False
        self._sums = torch.zeros(len(METRICS), dtype=torch.float64, device=self.args.device)
        self._since_time = time.perf_counter()

    def get_train_dataloader(self) -> DataLoader:
        sampler = ComposedBatchSampler(self.composer, rank=self.args.process_index)
        return _EpochDataLoader(
            self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kinds = inputs["loss_kinds"][:, 1:]  # token t+1 is predicted at position t
        norms = token_weights(kinds, inputs["row_norm"], alpha=1.0, per_sequence=self.per_sequence)
        weights = norms * torch.where(kinds == UL, self.alpha, 1.0)
        # the wrapped model must be the one called: DDP, FSDP and DeepSpeed hook its forward
        with self.loss_head.batch(inputs["input_ids"][:, 1:], kinds, weights) as head:
            loss = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False).logits
        if not self._output_checked:
            head.check_output(loss)
            self._output_checked = True
        out, keep = head.result, kinds != IGNORE
        self._track(out, kinds[keep], norms[keep], inputs["attention_mask"])
        loss = loss * self.accelerator.num_processes
        return (loss, {"token_loss": out.token_loss}) if return_outputs else loss

    @torch.no_grad()
    def _track(self, out, kinds, norms, attention_mask) -> None:
        is_ce, is_ul = kinds == CE, kinds == UL
        values = (
            (out.token_loss * norms * is_ce).sum(), (out.token_loss * norms * is_ul).sum(),
            (out.entropy * is_ce).sum(), is_ce.sum(), (out.entropy * is_ul).sum(), is_ul.sum(),
            attention_mask.sum(), (norms * is_ce).sum(), (norms * is_ul).sum(),
        )
        self._sums += torch.stack([v.to(torch.float64) for v in values]).to(self._sums.device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and "eval_loss" not in logs:
            logs.update(self._window_metrics())
        super().log(logs, start_time)

    def _window_metrics(self) -> dict[str, float]:
        """Means over the optimizer steps since the last log, summed over processes (a collective call)."""
        sums = self.accelerator.reduce(self._sums.clone(), reduction="sum") if self.accelerator.num_processes > 1 else self._sums
        s = dict(zip(METRICS, sums.tolist()))
        elapsed = max(1e-9, time.perf_counter() - self._since_time)
        # a step's normalisers of one type sum to its share of a full step (1, less in a scaled last step):
        # dividing by them gives the mean per step, not one shrunk by the epoch's last step
        ce_loss, ul_loss = s["ce_loss"] / max(s["ce_weight"], 1e-12), s["ul_loss"] / max(s["ul_weight"], 1e-12)
        metrics = {
            "ce_loss": ce_loss,
            "ul_loss": ul_loss,
            "weighted_ul_loss": self.alpha * ul_loss,
            "entropy_ce": s["ce_entropy_sum"] / max(1.0, s["ce_tokens"]),
            "entropy_ul": s["ul_entropy_sum"] / max(1.0, s["ul_tokens"]),
            "tokens_per_second": s["tokens"] / elapsed,
        }
        if not self.composer.ul_lengths:
            for key in ("ul_loss", "weighted_ul_loss", "entropy_ul"):
                del metrics[key]
        self._sums.zero_()
        self._since_time = time.perf_counter()
        return metrics

