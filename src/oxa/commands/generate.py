"""`oxa generate`: sample n responses per query record (transformers, or vLLM when installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from oxa.commands.common import (AnswerFieldOpt, ConfigOpt, IdFieldOpt, QueryFieldOpt, ResponseFieldOpt, SkipBadOpt,
                                 console, field_flags)
from oxa.config import resolve

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model dir, hub id, .gguf file or alias.")]
NOpt = Annotated[int, typer.Option("--n", help="Samples per query.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Sampling temperature (0 = greedy).")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", help="Longest response, in tokens.")]
StopOpt = Annotated[Optional[list[str]], typer.Option("--stop", help="Stop string (repeatable); not kept in the output.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every sample's random stream.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Samples decoded together (transformers backend).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="auto (vLLM if installed with a GPU), transformers or vllm.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, ...")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Only the first LIMIT queries.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
TemplateOpt = Annotated[bool, typer.Option("--template/--no-template", help="Chat template, or the plain query + suffix.")]


def sampling_flags(n: int, temperature: float, top_p: float, max_new_tokens: int, stop: list[str] | None, seed: int,
                   batch_size: int, backend: str, dtype: str, device: str, prompt_template: bool) -> dict:
    """Sampling flags as settings for :func:`oxa.config.resolve` (shared with ``oxa eval``)."""
    return {"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
            "stop": list(stop or []), "seed": seed, "batch_size": batch_size, "backend": backend, "dtype": dtype,
            "device": device, "prompt.template": prompt_template}


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        input: Annotated[Optional[Path], typer.Argument(help="Query records (JSONL, JSON array or Parquet).")] = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Sample records (.jsonl or .parquet).")] = None,
        model: ModelOpt = None,
        n: NOpt = 1,
        temperature: TemperatureOpt = 0.6,
        top_p: TopPOpt = 0.95,
        max_new_tokens: MaxNewOpt = 32768,
        stop: StopOpt = None,
        seed: SeedOpt = 0,
        batch_size: BatchOpt = 32,
        backend: BackendOpt = "auto",
        dtype: DtypeOpt = "float32",
        device: DeviceOpt = "auto",
        limit: LimitOpt = None,
        prompt_template: TemplateOpt = True,
        progress: ProgressOpt = True,
        config: ConfigOpt = None,
        skip_bad: SkipBadOpt = False,
        fields_id: IdFieldOpt = "id",
        fields_query: QueryFieldOpt = "query",
        fields_response: ResponseFieldOpt = "response",
        fields_answer: AnswerFieldOpt = "answer",
    ) -> None:
        """Sample N responses per query; one output record per sample (resumable: re-run to continue)."""
        from oxa.distributed import dist_info
        from oxa.generation import GenerateConfig, generate_file

        flags = {"input": input, "output": output, "model": model, "limit": limit, "skip_bad": skip_bad, "progress": progress,
                 **sampling_flags(n, temperature, top_p, max_new_tokens, stop, seed, batch_size, backend, dtype,
                                  device, prompt_template),
                 **field_flags(fields_id, fields_query, fields_response, fields_answer)}
        cfg = resolve(GenerateConfig, config, flags)
        path = generate_file(cfg)
        if dist_info()[0] == 0:
            console.print(f"wrote {path}")
