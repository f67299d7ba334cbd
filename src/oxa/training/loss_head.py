"""The output layer computes the fused loss, so it runs where FSDP and DeepSpeed ZeRO-3 have gathered its weight.

FSDP (full shard, FSDP2's DTensors) and ZeRO-3 keep each process's slice of a weight outside the forward pass
of the module that owns it and gather the whole weight in a pre-forward hook. The fused CE + alpha * UL loss
(:func:`oxa.losses.fused_token_losses`) needs the whole output projection, so it must run inside the output
layer's forward: :class:`LossHead` replaces that layer's ``forward`` (on the instance; parameter names, the
state dict and tied embeddings stay as they are). While :meth:`LossHead.batch` holds a batch's targets, the
layer maps the final hidden states to the scalar loss instead of logits, and the model returns that scalar
as its ``logits``. Backward therefore enters through the model's output, where the engines hang their own
hooks (re-gather for backward, reduce-scatter of the gradients). Outside :meth:`LossHead.batch` the layer
computes logits as before (evaluation, generation).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from oxa.errors import OxaError
from oxa.losses import IGNORE, GeneralizedCE, TokenLosses, fused_token_losses


def check_fused_loss_supported(model) -> None:
    """Refuse, before training, a model whose logits are not ``hidden @ weight.T`` of its output layer."""
    name = type(model).__name__
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for setting in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, setting, None) not in (None, 1, 1.0):
            raise OxaError(f"{name} applies {setting}={getattr(config, setting)} to its logits, which the fused "
                           "OXA loss (logits = hidden @ lm_head.weight.T) does not: this model is not supported")
    layer = model.get_output_embeddings()
    if layer is None or not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise OxaError(f"{name} has no output projection with a weight: the fused OXA loss needs one")
    if getattr(layer, "bias", None) is not None:
        raise OxaError(f"{name}'s output projection has a bias, which the fused OXA loss does not add: not supported")


class LossHead:
    """Makes ``model``'s output layer return the fused loss of the batch given to :meth:`batch`."""

    def __init__(self, model, *, gce: GeneralizedCE | None = None, chunk_size: int | None = None):
        check_fused_loss_supported(model)
        self.layer = model.get_output_embeddings()
        self.gce, self.chunk_size = gce, chunk_size
        self.result: TokenLosses | None = None
        self._batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._logits_forward = self.layer.forward
        self.layer.forward = self._forward

    @contextmanager
    def batch(self, targets: torch.Tensor, kinds: torch.Tensor, weights: torch.Tensor):
        """Within this block the output layer returns ``sum_t weights[t] * loss_t`` (``result`` holds the rest).

        ``targets``, ``kinds``, ``weights`` are [B, T-1]: the token each position predicts, its kind
        (CE / UL / IGNORE) and its coefficient in the step's loss.
        """
        self._batch, self.result = (targets, kinds, weights), None
        try:
            yield self
        finally:
            self._batch = None

    def _forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._batch is None:
            return self._logits_forward(hidden)
        targets, kinds, weights = self._batch
        if hidden.shape[:2] != (kinds.shape[0], kinds.shape[1] + 1):
            raise OxaError(f"the output layer got hidden states {tuple(hidden.shape)} for a batch of "
                           f"{tuple(kinds.shape)} targets: the model does not call it on every position")
        keep = kinds != IGNORE
        # self.layer.weight, read here, is the whole weight: the engine's pre-forward hook has gathered it
        self.result = fused_token_losses(hidden[:, :-1][keep], self.layer.weight, targets[keep], kinds[keep],
                                         weights[keep], gce=self.gce, chunk_size=self.chunk_size)
        return self.result.loss

    def check_output(self, model_output: torch.Tensor) -> None:
        """Refuse a model that changed what its output layer returned (a logit scale, a soft cap, ...)."""
        expected = self.result.loss.detach().to(model_output.dtype)  # an engine may cast the model's outputs
        if model_output.shape != () or not torch.equal(model_output.detach(), expected):
            raise OxaError("the model transforms its output layer's result (a logit scale or soft cap?), so the "
                           "fused OXA loss would be wrong for it: not supported")
