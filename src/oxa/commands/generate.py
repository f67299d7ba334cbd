"""`oxa generate`: sample n responses per query record (transformers, or vLLM when installed)."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "generate", "oxa.generation:GenerateConfig")
    def generate(cfg) -> None:
        """Sample N responses per query; one output record per sample (resumable: re-run to continue)."""
        from oxa.distributed import dist_info
        from oxa.generation import generate_file

        path = generate_file(cfg)
        if dist_info()[0] == 0:
            console.print(f"wrote {path}")
