"""Prompt prefilter: keep the RL prompts the starting policy solves sometimes, but not always.

A prompt whose k rollouts all score the same gives GRPO no learning signal (every advantage is 0). The
authors trained on the DeepScaleR prompts their teacher solved 20-80 % of the time; with the prefilter on,
``oxa rl`` does the same with the starting model itself: it samples ``k`` answers per prompt (oxa's
sampler, the RL prompt format and the rollout temperature unless told otherwise), grades them with the RL
reward, and trains only on the prompts solved between ``min_correct`` and ``max_correct`` times.

Written under ``OUTPUT_DIR/prefilter/``: ``samples.jsonl`` (resumable, sharded under torchrun, as ``oxa
generate``), ``prompts.jsonl`` (the kept prompts with their ``prefilter_correct`` count: a record file
``oxa rl`` also reads as ``prompts``) and ``prefilter.json`` (the settings and counts). A re-run with the
same settings reads the kept prompts back instead of sampling again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from oxa.config import StageConfig
from oxa.errors import OxaError
from oxa.io import read_records, write_json, write_records
from oxa.records import Fields

if TYPE_CHECKING:
    from oxa.rl.config import RLConfig

PREFILTER_DIR = "prefilter"


class PrefilterConfig(StageConfig):
    """Keep only the prompts the starting model solves between min_correct and max_correct of k times."""

    enabled: bool = Field(False, description="Sample k answers per prompt with the starting model before training "
                          "and keep the prompts it solves sometimes (the authors kept those their teacher solved 20-80 %).")
    k: int = Field(8, ge=1, description="Answers sampled per prompt.")
    min_correct: int = Field(1, ge=0, description="Keep prompts solved at least this many times of k.")
    max_correct: int | None = Field(None, ge=0, description="Keep prompts solved at most this many times of k "
                                    "(default: k - 1, so that prompts always solved go).")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature (default: the rollout temperature).")
    max_new_tokens: int | None = Field(None, ge=1, description="Response budget (default: max_response_length).")

    @model_validator(mode="after")
    def _check(self) -> PrefilterConfig:
        if not self.min_correct <= self.upper <= self.k:
            raise ValueError(f"prefilter needs min_correct ({self.min_correct}) <= max_correct ({self.upper}) <= k ({self.k})")
        return self

    @property
    def upper(self) -> int:
        return self.k - 1 if self.max_correct is None else self.max_correct


def prefilter_prompts(records: list[dict], cfg: RLConfig, *, backend=None, log=print) -> list[dict]:
    """The prompt records of ``cfg.prompts`` that ``cfg.model`` solves ``min_correct``..``max_correct`` times
    of ``k`` (each with ``prefilter_correct``), in their order; see the module docstring for the files.
    ``backend`` samples instead of ``cfg.model`` (any :mod:`oxa.generation` backend)."""
    from oxa.distributed import dist_info
    from oxa.generation import SamplingConfig, make_backend
    from oxa.generation.stage import sample_to_file
    from oxa.rl.reward import MathReward

    p = cfg.prefilter
    out = Path(cfg.output_dir) / PREFILTER_DIR
    sampling = SamplingConfig(n=p.k, temperature=cfg.temperature if p.temperature is None else p.temperature,
                              top_p=cfg.top_p, max_new_tokens=p.max_new_tokens or cfg.max_response_length,
                              seed=cfg.seed, batch_size=cfg.rollout_batch_size, prompt=cfg.prompt)
    run = {"stage": "rl-prefilter", "model": cfg.model, "prompts": cfg.prompts, "limit": cfg.limit,
           "ids": [str(r["id"]) for r in records], "reward": cfg.reward.model_dump(exclude={"workers", "timeout"}),
           "min_correct": p.min_correct, "max_correct": p.upper,
           **sampling.model_dump(mode="json", exclude={"batch_size", "device", "backend", "dtype"})}
    summary_file, kept_file = out / "prefilter.json", out / "prompts.jsonl"
    if summary_file.exists() and kept_file.exists() and json.loads(summary_file.read_text(encoding="utf-8"))["run"] == \
            json.loads(json.dumps(run)):
        return read_records(kept_file)
    samples_file = out / "samples.jsonl"
    log(f"prefilter: sampling {p.k} answers to each of {len(records)} prompts with {cfg.model} into {samples_file}")
    sample_to_file(records, samples_file, run, sampling, lambda: backend or make_backend(cfg.model, sampling), n=p.k,
                   fields=Fields(),  # load_prompts wrote id, query and answer under these names
                   where=f"{cfg.prompts} (prefilter)", progress=False)
    samples = read_records(samples_file)
    with MathReward(cfg.reward) as reward:
        results = reward.grade([s["response"] for s in samples], [s["answer"] for s in samples])
    solved = [sum(r.reward for r in results[i * p.k:(i + 1) * p.k]) for i in range(len(records))]
    kept = [{**r, "prefilter_correct": int(c)} for r, c in zip(records, solved) if p.min_correct <= c <= p.upper]
    histogram = dict(sorted(Counter(int(c) for c in solved).items()))
    if dist_info()[0] == 0:
        write_records(kept_file, kept)
        write_json(summary_file, {"run": run, "prompts": len(records), "kept": len(kept), "solved_histogram": histogram})
    log(f"prefilter: kept {len(kept)} of {len(records)} prompts solved {p.min_correct}-{p.upper} of {p.k} times by "
        f"the starting model (prompts per solve count: {histogram})")
    if not kept:
        raise OxaError(f"prefilter: no prompt of {cfg.prompts} is solved {p.min_correct}-{p.upper} of {p.k} times "
                       f"by {cfg.model}; widen prefilter.min_correct / max_correct")
    return kept
