"""Batched sampling with transformers on any device: the backend that always works.

A batch holds up to ``batch_size`` samples. Their distinct prompts are left-padded and run through the
model once (prefill); the KV cache is then gathered so each sample gets its own copy, and decoding
proceeds one token per step for all unfinished samples together. A sample that emits EOS, hits a stop
string or reaches ``max_new_tokens`` leaves the batch at once (its rows are dropped from the cache),
so short answers do not pay for long ones. Jobs are sorted by prompt length, longest first, so a batch
wastes little padding and an out-of-memory error shows up in the first batch rather than the last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from oxa.generation.kv_cache import growing_cache
from oxa.generation.sampling import SamplingParams, draw, entropy_of_logits, nucleus
from oxa.generation.types import Job, Sampled
from oxa.prompting import PromptFormat, encode_prompt


class TransformersBackend:
    """Sampling from an in-memory transformers causal LM."""

    name = "transformers"
    reports_entropy = True

    def __init__(self, model, tokenizer, *, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)

    def run(self, queries: Sequence[str], jobs: Sequence[Job], params: SamplingParams,
            fmt: PromptFormat) -> Iterator[list[tuple[Job, Sampled]]]:
        """Yield the finished samples batch by batch (each batch is one unit of resumable progress)."""
        prompts = {q: encode_prompt(self.tokenizer, queries[q], fmt) for q in sorted({j.query for j in jobs})}
        order = sorted(jobs, key=lambda j: (-len(prompts[j.query]), j.query, j.key))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            yield list(zip(batch, self.sample_batch([prompts[j.query] for j in batch], [j.seed for j in batch], params)))

    @torch.inference_mode()
    def sample_batch(self, prompts: list[list[int]], seeds: list[int], params: SamplingParams) -> list[Sampled]:
        """Sample one continuation per (prompt, seed) pair; equal prompts are prefilled once."""
        device = self.model.device
        unique = list(dict.fromkeys(map(tuple, prompts)))
        width = max(len(p) for p in unique)
        ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(unique), width), dtype=torch.long)
        for i, p in enumerate(unique):
            if p:
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = growing_cache(self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=True, logits_to_keep=1)

        # one row per sample: gather its prompt's cache, mask and last logits
        rows = torch.tensor([unique.index(tuple(p)) for p in prompts], device=device)
        cache.batch_select_indices(rows)
        mask, logits, next_pos = mask[rows], out.logits[rows, -1], positions[rows, -1] + 1

        n = len(prompts)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        tokens: list[list[int]] = [[] for _ in range(n)]
        entropy_sum, sampling_sum = [0.0] * n, [0.0] * n
        results: list[Sampled | None] = [None] * n
        active = list(range(n))
        stop_window = max((len(s) for s in params.stop), default=0) + 8  # tokens decoded to look for a stop string
        while True:
            probs, candidates = nucleus(logits, params.temperature, params.top_p)
            chosen = draw(probs, [generators[r] for r in active], candidates).tolist()
            h_raw = entropy_of_logits(logits).tolist()
            h_sampling = (-(probs * probs.clamp_min(1e-30).log()).sum(-1)).tolist()
            keep = []
            for j, r in enumerate(active):
                tokens[r].append(chosen[j])
                entropy_sum[r] += h_raw[j]
                sampling_sum[r] += h_sampling[j]
                reason = self._finish_reason(tokens[r], params, stop_window)
                if reason is None:
                    keep.append(j)
                else:
                    results[r] = self._result(tokens[r], reason, entropy_sum[r], sampling_sum[r], params)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, next_pos = mask[index], next_pos[index]
                active = [active[j] for j in keep]
            step_ids = torch.tensor([[tokens[r][-1]] for r in active], device=device)
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=next_pos[:, None],
                             cache=cache, use_cache=True)
            logits = out.logits[:, -1]
            next_pos = next_pos + 1
        return results  # type: ignore[return-value]

    def _finish_reason(self, ids: list[int], params: SamplingParams, window: int) -> str | None:
        if ids[-1] in self.eos_ids:
            return "stop"
        if params.stop:
            tail = self.tokenizer.decode(ids[-window:], skip_special_tokens=False)
            if any(s in tail for s in params.stop):
                return "stop"
        if len(ids) >= params.max_new_tokens:
            return "length"
        return None

    def _result(self, ids: list[int], reason: str, h_sum: float, hs_sum: float, params: SamplingParams) -> Sampled:
        body = ids[:-1] if ids[-1] in self.eos_ids else ids
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        cuts = [i for i in (text.find(s) for s in params.stop) if i >= 0]
        if cuts:  # like vLLM, the stop string itself is not part of the response
            text = text[: min(cuts)]
        return Sampled(text=text, token_ids=ids, finish_reason=reason, entropy=h_sum / len(ids),
                       sampling_entropy=hs_sum / len(ids))


def eos_token_ids(model, tokenizer) -> frozenset[int]:
    """Every id that ends a response: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the tokenizer and model define no EOS token; cannot tell where a response ends")
    return frozenset(ids)
