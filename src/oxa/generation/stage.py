"""`oxa generate` as a library call: settings, backend choice, resumable file-to-file sampling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.distributed import default_device, dist_info, finish_parts, open_part, shard, shutdown
from oxa.errors import OxaError
from oxa.generation.generate import generate_records
from oxa.generation.transformers_backend import TransformersBackend
from oxa.generation.vllm_backend import VLLMBackend, vllm_available
from oxa.io import read_records
from oxa.prompting import PromptFormat
from oxa.records import Fields


class SamplingConfig(StageConfig):
    """How to sample (shared by ``oxa generate``, ``oxa eval`` and ``oxa distill``)."""

    n: int = Field(1, ge=1, description="samples per query", json_schema_extra=cli(section="Sampling"))
    temperature: float = Field(0.6, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(32768, ge=1, description="longest response, in tokens")
    stop: list[str] = Field(default_factory=list, description="stop string (repeatable); not kept in the output")
    seed: int = Field(0, description="seed of every sample's random stream")
    batch_size: int = Field(32, ge=1, description="samples decoded together (transformers backend)")
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="the sampling engine; auto: vLLM if installed with a GPU, else transformers")
    dtype: str = Field("float32", description="model weights: float32, bfloat16, float16 or auto")
    device: str = Field("auto", description="where the model runs: auto, cpu, cuda, cuda:1, ...")
    prompt: PromptFormat = Field(default_factory=PromptFormat)


class GenerateConfig(SamplingConfig):
    model: str = Field(description="model directory, hub id, .gguf file or alias",
                       json_schema_extra=cli("-m", section="Options"))
    input: Path = Field(description="query records (JSONL, JSON array or Parquet)",
                        json_schema_extra=cli(positional=True))
    output: Path = Field(description="sample records (.jsonl or .parquet)", json_schema_extra=cli("-o"))
    limit: int | None = Field(None, ge=1, description="only the first LIMIT query records")
    fields: Fields = Field(default_factory=Fields)
    skip_bad: bool = Field(False, description="skip malformed lines and records lacking fields, and count them")
    progress: bool = Field(True, description="show progress bars")


def make_backend(model_spec: str, cfg: SamplingConfig):
    """The backend ``cfg.backend`` names; ``auto`` is vLLM when installed with a GPU, else transformers."""
    import torch

    from oxa.models import load_model, load_tokenizer, resolve

    kind = cfg.backend
    if kind == "auto":
        kind = "vllm" if vllm_available() and torch.cuda.is_available() else "transformers"
    if kind == "vllm":
        if not vllm_available():
            raise OxaError("backend 'vllm' needs vLLM (pip install vllm, on a CUDA machine); or use --backend transformers")
        return VLLMBackend(resolve(model_spec), load_tokenizer(model_spec), dtype="auto" if cfg.dtype == "float32" else cfg.dtype)
    tokenizer = load_tokenizer(model_spec, padding_side="left")
    model = load_model(model_spec, dtype=cfg.dtype, device=default_device() if cfg.device == "auto" else cfg.device)
    return TransformersBackend(model, tokenizer, batch_size=cfg.batch_size)


def sampling_kwargs(cfg: SamplingConfig) -> dict:
    return dict(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                stop=cfg.stop, seed=cfg.seed, fmt=cfg.prompt)


def sample_to_file(records: list[dict], out: Path, run: dict, cfg: SamplingConfig, get_backend: Callable[[], Any], *,
                   n: int, fields: Fields, where: str, progress: bool) -> None:
    """Draw ``n`` samples per record into ``out``: this rank's share, resuming its part file (made with
    the same ``run`` description), then rank 0 merges the parts. ``get_backend`` is called only when
    samples are missing."""
    rank, world = dist_info()
    mine = set(shard(len(records), rank, world))
    keys = [q * n + s for q in sorted(mine) for s in range(n)]
    writer = open_part(out, run, keep=lambda i: i // n in mine)
    try:
        if any(k not in writer.done for k in keys):
            generate_records(records, fields=fields, backend=get_backend(), writer=writer, keys=keys,
                             progress=progress and rank == 0, where=where, **sampling_kwargs(cfg) | {"n": n})
        finish_parts(writer, len(records) * n)
    finally:
        writer.close()


def generate_file(cfg: GenerateConfig, *, backend=None) -> Path:
    """Sample ``cfg.n`` responses per record of ``cfg.input`` into ``cfg.output``; resumable and sharded.

    Progress is appended to a part file beside the output after every batch; re-running the same
    command after an interrupt draws only the missing samples, and (per-sample seeds) the finished file
    is the same as an uninterrupted run's. Under ``torchrun`` each rank samples every K-th query and
    rank 0 merges the parts (:mod:`oxa.distributed`).
    """
    records = read_records(cfg.input, skip_bad=cfg.skip_bad)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    if not records:
        raise OxaError(f"{cfg.input}: no records to generate from")
    run = {"stage": "generate", **cfg.model_dump(exclude={"output", "batch_size", "device", "progress"})}
    try:
        sample_to_file(records, cfg.output, run, cfg, lambda: backend or make_backend(cfg.model, cfg), n=cfg.n,
                       fields=cfg.fields, where=str(cfg.input), progress=cfg.progress)
    finally:
        shutdown()
    return cfg.output
