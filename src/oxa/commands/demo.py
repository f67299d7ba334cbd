"""`oxa demo`: the OXA pipeline end to end on the synthetic world, on a laptop CPU, with no download."""

from __future__ import annotations

import typer

from oxa.commands.common import console
from oxa.commands.flags import stage_command


def register(app: typer.Typer) -> None:
    @stage_command(app, "demo", "oxa.demo:DemoConfig")
    def demo(cfg) -> None:
        """The OXA pipeline on the synthetic world (`oxa run demo`): build it and its base model, verify -> score
        -> select, self-distil and mine errors, fine-tune SFT_LP / SFT / OXA_MLE / OXA_Full, GRPO from each,
        evaluate before and after, report.

        Finished stages are reused on a re-run (manifest.json records each stage's key, settings and outputs).
        With --seeds, one run per seed (OUT/seed-S) and OUT/report.md: each method's spread and the paper's claims.
        """
        def log(msg: str) -> None:
            console.print(f"[bold cyan]demo[/] {msg}", highlight=False)

        if cfg.seeds:
            from oxa.seeds import run_seeds

            console.print(f"finished: [bold]{run_seeds(cfg, cfg.seeds, log=log)}[/]")
            return
        from oxa.demo import run_demo

        manifest = run_demo(cfg, log=log)
        console.print(f"finished in {manifest['seconds']:.1f} s: [bold]{cfg.out / 'demo_report' / 'report.md'}[/]")
