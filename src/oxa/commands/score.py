"""`oxa score`: add each response's perplexity under a model (``ppl``, ``n_tokens``, ``truncated``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import (
    AnswerFieldOpt,
    ConfigOpt,
    IdFieldOpt,
    QueryFieldOpt,
    ResponseFieldOpt,
    SkipBadOpt,
    console,
    field_flags,
)


def score(
    input: Annotated[Optional[Path], typer.Argument(help="Records to score: JSONL, JSON array or Parquet.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (.jsonl or .parquet).")] = None,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Model directory, hub id, .gguf file or alias.")
    ] = None,
    prompt_template: Annotated[
        bool,
        typer.Option("--template/--no-template", help="Condition on the chat-templated prompt, or on the raw query."),
    ] = True,
    prompt_suffix: Annotated[
        Optional[str], typer.Option("--suffix", help="Text appended to every query [default: the paper's suffix].")
    ] = None,
    prompt_system: Annotated[Optional[str], typer.Option("--system", help="A system message for the template.")] = None,
    max_len: Annotated[
        Optional[int], typer.Option("--max-len", help="Context cap in tokens; longer examples are cut and flagged.")
    ] = None,
    token_budget: Annotated[int, typer.Option("--token-budget", help="Padded tokens per batch.")] = 16384,
    sort_window: Annotated[
        int, typer.Option("--sort-window", help="Records sorted by length together (and the unit of sharding).")
    ] = 256,
    dtype: Annotated[str, typer.Option("--dtype", help="Model weights: float32, bfloat16, float16 or auto.")] = "float32",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 ...; auto: this rank's GPU if any.")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    config: ConfigOpt = None,
    skip_bad: SkipBadOpt = False,
    fields_id: IdFieldOpt = "id",
    fields_query: QueryFieldOpt = "query",
    fields_response: ResponseFieldOpt = "response",
    fields_answer: AnswerFieldOpt = "answer",
) -> None:
    """Score each response's perplexity under MODEL; resumable, and sharded under torchrun.

    PPL = exp(mean NLL of the response tokens), computed in fp32 from one forward pass over the
    prompt and response as training will see them. Re-run the same command after an interruption to
    resume. Multi-process: ``torchrun --nproc_per_node K -m oxa.cli score ...``.
    """
    from oxa.config import resolve
    from oxa.scoring import ScoreConfig, score_file

    flags = {
        "input": input, "output": output, "model": model, "prompt.template": prompt_template,
        "prompt.suffix": prompt_suffix, "prompt.system": prompt_system, "max_len": max_len,
        "token_budget": token_budget, "sort_window": sort_window, "dtype": dtype, "device": device,
        "progress": progress, "skip_bad": skip_bad,
        **field_flags(fields_id, fields_query, fields_response, fields_answer),
    }
    summary = score_file(resolve(ScoreConfig, config, flags))
    if summary is not None:
        console.print(summary.line(), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("score")(score)
