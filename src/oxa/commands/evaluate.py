"""`oxa eval`: Pass@1, Pass@k, entropy and response length of a model on math benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import ConfigOpt, console
from oxa.commands.generate import (BackendOpt, BatchOpt, DeviceOpt, DtypeOpt, MaxNewOpt, ModelOpt, ProgressOpt, SeedOpt, StopOpt,
                                   TemperatureOpt, TemplateOpt, TopPOpt, sampling_flags)
from oxa.config import resolve


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        benchmarks: Annotated[Optional[list[str]], typer.Argument(
            help="Benchmark names (aime24 aime25 brumo25 cmimc25 hmmt25 minerva math500 gsm8k ...) or record files.")] = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
        model: ModelOpt = None,
        n: Annotated[Optional[int], typer.Option("--n", help="Samples per problem (default: the paper's 128; 64 for Minerva).")] = None,
        temperature: TemperatureOpt = 0.6,
        top_p: TopPOpt = 0.95,
        max_new_tokens: MaxNewOpt = 32768,
        stop: StopOpt = None,
        seed: SeedOpt = 0,
        limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first LIMIT problems per benchmark.")] = None,
        data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Directory holding the benchmark files.")] = None,
        reference: Annotated[Optional[Path], typer.Option(
            "--reference", help="A reference model's results.json: report gains by its pass-count buckets.")] = None,
        second_grader: Annotated[Optional[str], typer.Option(
            "--second-grader", help="Also grade with this extractor (deepscaler) and count disagreements.")] = None,
        workers: Annotated[int, typer.Option("--workers", help="Grading processes.")] = 2,
        grade_timeout: Annotated[float, typer.Option("--grade-timeout", help="Seconds per graded answer.")] = 5.0,
        batch_size: BatchOpt = 32,
        backend: BackendOpt = "auto",
        dtype: DtypeOpt = "float32",
        device: DeviceOpt = "auto",
        prompt_template: TemplateOpt = True,
        progress: ProgressOpt = True,
        config: ConfigOpt = None,
    ) -> None:
        """Sample N answers per problem, grade them, write OUT/results.json and OUT/samples.jsonl."""
        from oxa.evaluation import EvalConfig, evaluate
        from oxa.report import console_table

        flags = {"benchmarks": benchmarks or None, "output": output, "model": model, "limit": limit,
                 "data_dir": data_dir, "reference": reference, "second_grader": second_grader, "workers": workers,
                 "grade_timeout": grade_timeout, "progress": progress,
                 **sampling_flags(1, temperature, top_p, max_new_tokens, stop, seed, batch_size, backend, dtype,
                                  device, prompt_template)}
        flags["n"] = n
        cfg = resolve(EvalConfig, config, flags)
        results = evaluate(cfg)
        if not results:
            return  # a helper rank under torchrun: rank 0 reports
        console.print(console_table(results))
        console.print(f"wrote {cfg.output / 'results.json'} and {cfg.output / 'samples.jsonl'}")
