"""`oxa score`: add each response's perplexity under a model (``ppl``, ``n_tokens``, ``truncated``)."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "score", "oxa.scoring:ScoreConfig")
    def score(cfg) -> None:
        """Score each response's perplexity under MODEL; resumable, and sharded under torchrun.

        PPL = exp(mean NLL of the response tokens), computed in fp32 from one forward pass over the
        prompt and response as training will see them. Re-run the same command after an interruption to
        resume. Multi-process: ``torchrun --nproc_per_node K -m oxa.cli score ...``.
        """
        from oxa.scoring import score_file

        summary = score_file(cfg)
        if summary is not None:
            console.print(summary.line(), soft_wrap=True)
