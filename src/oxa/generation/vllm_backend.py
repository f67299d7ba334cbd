"""Sampling with vLLM's offline engine, used when vLLM is installed (GPU machines).

Every sample is its own request with ``n=1`` and its own seed (the same per-sample seed the
transformers backend uses), so the records out have the same shape and the same resumption
semantics; vLLM batches the requests internally (continuous batching, shared prompt prefixes).
vLLM exposes only top-k log-probabilities, so the full-distribution entropies are left empty:
measure policy entropy with the transformers backend (``oxa eval --backend transformers``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence

from oxa.generation.sampling import SamplingParams
from oxa.generation.types import Job, Sampled
from oxa.prompting import PromptFormat, prompt_text


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VLLMBackend:
    """Sampling through ``vllm.LLM``; ``chunk`` requests are submitted per unit of resumable progress."""

    name = "vllm"
    reports_entropy = False

    def __init__(self, model_path: str, tokenizer, *, dtype: str = "auto", chunk: int = 4096, **engine_kwargs):
        from vllm import LLM

        self.tokenizer = tokenizer
        self.chunk = chunk
        self.llm = LLM(model=model_path, dtype=dtype, **engine_kwargs)

    def run(self, queries: Sequence[str], jobs: Sequence[Job], params: SamplingParams,
            fmt: PromptFormat) -> Iterator[list[tuple[Job, Sampled]]]:
        from vllm import SamplingParams as VSamplingParams

        texts = {q: prompt_text(self.tokenizer, queries[q], fmt) for q in sorted({j.query for j in jobs})}
        for start in range(0, len(jobs), self.chunk):
            batch = list(jobs[start : start + self.chunk])
            requests = [
                VSamplingParams(n=1, temperature=params.temperature, top_p=params.top_p,
                                max_tokens=params.max_new_tokens, stop=list(params.stop), seed=j.seed)
                for j in batch
            ]
            outputs = self.llm.generate([texts[j.query] for j in batch], requests, use_tqdm=False)
            yield [(j, from_vllm(o.outputs[0])) for j, o in zip(batch, outputs)]


def from_vllm(completion) -> Sampled:
    """A vLLM ``CompletionOutput`` as a :class:`Sampled` (its text already excludes the stop string;
    its finish reason is "stop", "length" or, for a request vLLM aborted, "abort")."""
    return Sampled(text=completion.text, token_ids=list(completion.token_ids), finish_reason=completion.finish_reason)
