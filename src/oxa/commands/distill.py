"""`oxa distill`: train an instruct model on a small teacher set, sample, verify, score errors, select the UL set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import (AnswerFieldOpt, ConfigOpt, IdFieldOpt, QueryFieldOpt, ResponseFieldOpt, SkipBadOpt,
                                 console, field_flags)
from oxa.config import resolve


def register(app: typer.Typer) -> None:
    @app.command("distill")
    def distill(
        teacher: Annotated[Optional[Path], typer.Argument(help="Teacher records (query, response, answer[, correct]).")] = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run directory.")] = None,
        base_model: Annotated[Optional[str], typer.Option("--base-model", "-m", help="The pre-trained model.")] = None,
        teacher_n: Annotated[int, typer.Option("--teacher-n", help="Size of the small teacher set.")] = 1000,
        queries: Annotated[Optional[Path], typer.Option("--queries", help="Queries to sample [default: the teacher's].")] = None,
        query_limit: Annotated[Optional[int], typer.Option("--query-limit", help="Only the first LIMIT queries.")] = None,
        n_errors: Annotated[int, typer.Option("--n-errors", help="Size of the UL set.")] = 50_000,
        min_ppl: Annotated[float, typer.Option("--min-ppl", help="Drop errors below this PPL (degenerate repeats).")] = 1.2,
        seed: Annotated[int, typer.Option("--seed", help="Seed of subset, training, sampling and tie-breaks.")] = 0,
        sampling_n: Annotated[int, typer.Option("--n", help="Samples per query.")] = 4,
        sampling_temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature.")] = 0.6,
        sampling_max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest sample.")] = 4096,
        sampling_batch_size: Annotated[int, typer.Option("--batch-size", help="Samples decoded together.")] = 32,
        config: ConfigOpt = None,
        skip_bad: SkipBadOpt = False,
        fields_id: IdFieldOpt = "id",
        fields_query: QueryFieldOpt = "query",
        fields_response: ResponseFieldOpt = "response",
        fields_answer: AnswerFieldOpt = "answer",
    ) -> None:
        """Self-distillation and error mining: RUN/ul_set.jsonl holds the lowest-PPL incorrect samples.

        Training settings for the instruct model go in the config file under `train:` (TrainConfig keys).
        Re-running skips finished steps.
        """
        from oxa.distill import DistillConfig
        from oxa.distill import distill as run_distill

        flags = {"teacher": teacher, "output": output, "base_model": base_model, "teacher_n": teacher_n,
                 "queries": queries, "query_limit": query_limit, "n_errors": n_errors, "min_ppl": min_ppl,
                 "seed": seed, "sampling.n": sampling_n, "sampling.temperature": sampling_temperature,
                 "sampling.max_new_tokens": sampling_max_new_tokens, "sampling.batch_size": sampling_batch_size,
                 "skip_bad": skip_bad, **field_flags(fields_id, fields_query, fields_response, fields_answer)}
        cfg = resolve(DistillConfig, config, flags)
        path = run_distill(cfg, log=console.print)
        console.print(f"UL set: {path}")
