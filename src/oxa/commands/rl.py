"""`oxa rl`: GRPO with the paper's verifiable reward on TRL; or export the same run for verl."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer
from pydantic import Field

from oxa.commands.common import console
from oxa.commands.flags import stage_command
from oxa.rl.verl import VerlOptions


class ExportOptions(VerlOptions):
    """Instead of training, write the run for verl (the cluster settings are verl's only ones)."""

    export: Optional[Literal["verl"]] = Field(
        None, description="only write this run for verl (its parquet data, a reward module calling oxa's grader, "
        "the main_ppo command line) and do not train")
    export_path: Optional[Path] = Field(None, description="directory for --export (default: OUTPUT_DIR/verl)")


def register(app: typer.Typer) -> None:
    @stage_command(app, "rl", "oxa.rl.config:RLConfig", options=ExportOptions)
    def rl(cfg, options: ExportOptions) -> None:
        """Train a policy with GRPO on verifiable math rewards (the paper's RLVR; Clip-Cov / KL-Cov), or
        export the run for verl.

        Run it under `torchrun` / `accelerate launch` for several processes. With save_steps set,
        `--resume latest` continues from the newest checkpoint in OUTPUT_DIR with the same next prompts.
        """
        if options.export:
            _export(cfg, options)
            return
        from oxa.rl import train_rl

        out = train_rl(cfg, log=console.print)
        console.print(f"saved the policy to {out} (metrics: {out / 'rl_metrics.jsonl'})")


def _export(cfg, options: ExportOptions) -> None:
    from oxa.rl.verl import export_verl

    out = options.export_path or cfg.output_dir / "verl"
    verl = VerlOptions.model_validate(options.model_dump(include=set(VerlOptions.model_fields)))
    summary = export_verl(cfg, out, verl)
    rows = ", ".join(f"{name} {n}" for name, n in summary["rows"].items())
    console.print(f"wrote the verl run to {out}: {rows} rows, reward module {summary['files']['reward']}; "
                  f"start it with [bold]{out / summary['files']['script']}[/] (more Hydra overrides may follow)")
