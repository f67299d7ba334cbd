"""Sampling n responses per query record: records in, one record per sample out."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tqdm.auto import tqdm

from oxa.generation.sampling import SamplingParams, sample_seed
from oxa.generation.transformers_backend import TransformersBackend
from oxa.generation.types import Job, Sampled
from oxa.io import ResumableWriter
from oxa.prompting import PromptFormat
from oxa.records import RESPONSE_FIELDS, Fields, get_text, record_id


def generate_records(
    records: Sequence[dict],
    model=None,
    tokenizer=None,
    *,
    n: int = 1,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 32768,
    stop: Sequence[str] = (),
    seed: int = 0,
    fmt: PromptFormat = PromptFormat(),
    fields: Fields = Fields(),
    batch_size: int = 32,
    backend=None,
    writer: ResumableWriter | None = None,
    keys: Collection[int] | None = None,
    progress: bool = True,
    where: str = "input",
) -> list[dict]:
    """Draw ``n`` samples for every query record; return one record per sample, query-major order.

    Each output record is its query record (minus fields describing the old response, such as
    ``correct`` and ``ppl``) plus ``query_id``, ``sample``, the response (under ``fields.response``),
    ``finish_reason``, ``n_tokens`` (generated tokens, EOS included), ``entropy`` and
    ``sampling_entropy``. Sample ``s`` of query ``i`` sits at position ``i * n + s``; that position
    is its key in ``writer`` (finished keys are skipped, new ones appended batch by batch) and in
    ``keys`` (the subset this process draws, for sharding). ``backend`` defaults to batched sampling
    with ``model`` and ``tokenizer`` (:class:`TransformersBackend`).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            stop=tuple(stop), seed=seed)
    queries = [get_text(r, fields.query, where=f"{where}: record {i + 1}") for i, r in enumerate(records)]
    ids = [record_id(r, fields, i) for i, r in enumerate(records)]
    jobs = [Job(key=i * n + s, query=i, seed=sample_seed(seed, ids[i], s)) for i in range(len(records)) for s in range(n)]
    if keys is not None:
        wanted = set(keys)
        jobs = [j for j in jobs if j.key in wanted]
    done = writer.done if writer is not None else {}
    todo = [j for j in jobs if j.key not in done]
    results = {j.key: done[j.key] for j in jobs if j.key in done}
    if todo:
        backend = backend or TransformersBackend(model, tokenizer, batch_size=batch_size)
        with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="sample", desc="generate",
                  disable=not progress, dynamic_ncols=True) as bar:
            for batch in backend.run(queries, todo, params, fmt):
                out = [(j.key, sample_record(records[j.query], ids[j.query], j.key % n, s, fields)) for j, s in batch]
                if writer is not None:
                    writer.add(out)
                results.update(out)
                bar.update(len(out))
    return [results[j.key] for j in jobs]


def sample_record(query: dict, query_id: str, sample: int, s: Sampled, fields: Fields) -> dict:
    record = {k: v for k, v in query.items() if k not in RESPONSE_FIELDS}
    record.update({
        "query_id": query_id,
        "sample": sample,
        fields.response: s.text,
        "finish_reason": s.finish_reason,
        "n_tokens": len(s.token_ids),
        "entropy": s.entropy,
        "sampling_entropy": s.sampling_entropy,
    })
    return record
