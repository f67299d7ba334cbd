"""SCOPE inside `oxa rl`: salvage failed rollouts at their first wrong step, and measure group diversity.

:class:`ScopeTransform` is a rollout transform (:mod:`oxa.rl.rollout`): it runs after grading and
before advantages. For each failed rollout it chooses to salvage (``ScopeConfig.which``,
``max_per_group``):

1. a PRM (``scope.prm``; the synthetic world's exact checker by default) locates the first wrong step;
2. the response before that step is kept, and a corrector writes the step again (the world's teacher,
   or any model through oxa's generation backend, shown the problem, the verified steps and, where the
   data has one, a reference solution: :mod:`oxa.prm.correct`);
3. the policy continues from prompt + kept prefix + corrected step, sampled on-policy like any rollout
   (oxa's sampler, its own seed per row and step);
4. the same reward functions grade the result. When it grades correct (or always, with
   ``keep_failed_salvages``) it enters training as ``placement`` says: it *replaces* the failed rollout in
   its group, or *joins* the group beside it (the group then holds n + ``slots`` rows, unused slots being
   padding rows that are left out of the baseline and the loss: :meth:`RolloutBatch.join`). TRL then
   computes advantages over the group as it stands.

Token classes of a salvaged rollout: the kept prefix and the continuation are ordinary on-policy tokens;
the corrected step's tokens are marked off-policy and trained as ``off_policy_tokens`` says (LUFFY's
-A p/(p+gamma) by default, or masked out: :mod:`oxa.rl.policy_loss`). The prefix is tokenized apart
from the correction and the continuation is sampled after exactly those tokens, so the off-policy mask
is exact.

Logged every step (``rl_metrics.jsonl`` and ``report_to``):

* ``salvage/*``: the mean reward of the rollouts as sampled (``reward_mean`` is after salvage), failures,
  those chosen, located, corrected, salvaged (graded correct), rows replaced or joined, and the first error's
  relative position (share of steps kept) as a mean and a 5-bin histogram ``salvage/first_error_pos/<bin>``
  (counts per process), and ``salvage/seconds`` spent salvaging (PRM, corrector, continuation, grading);
* ``prm/missed_failures``, ``prm/flagged_successes``: how the PRM's verdicts on the sampled rollouts
  disagree with the verifier's;
* ``diversity/*``: distinct final answers and reasoning paths per group of the *sampled* rollouts (the
  policy's exploration, comparable between GRPO and GRPO + SCOPE), and ``diversity_trained/*`` of the
  groups as trained (after salvage). A path is the world's teacher strategy on synthetic-world records
  and the sequence of step results elsewhere (:mod:`oxa.prm.diversity`).

With ``log_salvages`` every attempt is appended to ``OUTPUT_DIR/salvage.jsonl`` (the response, where
the error was located, the correction, the salvaged response and its reward), for auditing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from oxa.config import StageConfig
from oxa.errors import OxaError
from oxa.prm.correct import CorrectorConfig
from oxa.prm.load import PRMConfig
from oxa.rl.rollout import Rollout, RolloutBatch, join_slots

POSITION_BINS = 5  # first-error histogram bins over [0, 1]
SYNTH_FIELDS = ("problem", "family", "difficulty")
PLACED = {"replace": "replaced", "join": "joined"}  # placement -> its count's name in the log


class ScopeConfig(StageConfig):
    """SCOPE: salvage failed rollouts at the first wrong step a PRM finds. Only the abstract is public, so
    every choice it leaves open is a setting here, with the default documented."""

    enabled: bool = Field(False, description="Salvage failed rollouts (off: plain GRPO; diversity is still logged).")
    prm: PRMConfig = Field(default_factory=PRMConfig, description="The PRM that locates the first wrong step "
                           "(default: the synthetic world's exact checker).")
    corrector: Literal["teacher", "model"] = Field(
        "teacher", description="Who rewrites the wrong step: teacher (the synthetic world's teacher, exact) or model "
        "(corrector_model through oxa's generation backend).")
    corrector_model: CorrectorConfig | None = Field(None, description="The correcting model and its prompt "
                                                    "(corrector: model).")
    which: Literal["all", "no_success"] = Field(
        "all", description="Failures to salvage: all, or only those of groups where no rollout succeeded (the "
        "groups that would otherwise give no learning signal).")
    max_per_group: int | None = Field(None, ge=1, description="Salvage at most this many failures per group (the "
                                      "first ones); none: no limit.")
    success_reward: float = Field(1.0, description="A rollout whose total reward is below this failed (1.0: the "
                                  "verifiable reward of a correct answer).")
    placement: Literal["replace", "join"] = Field(
        "replace", description="Where a salvaged rollout goes: replace (takes the failed rollout's place) or join "
        "(added to its group beside the failure, which keeps its negative advantage; each group gets max_per_group "
        "- or n - more rows, unused ones padding, so set max_per_group to bound the cost).")
    keep_failed_salvages: bool = Field(False, description="Also replace a failure whose salvaged rollout still "
                                       "fails (its corrected step then gets a negative advantage); default: only "
                                       "salvages that grade correct replace the failure.")
    diversity: Literal["auto", "strategy", "steps", "off"] = Field(
        "auto", description="Group diversity paths: strategy (the synthetic world's teacher strategy), steps (the "
        "sequence of step results), auto (strategy on synthetic-world records, else steps), off.")
    log_salvages: bool = Field(True, description="Append every salvage attempt to OUTPUT_DIR/salvage.jsonl.")

    @model_validator(mode="after")
    def _check(self) -> ScopeConfig:
        if self.corrector == "model" and self.corrector_model is None:
            raise ValueError("scope.corrector is 'model' but scope.corrector_model is not set")
        return self

    @property
    def active(self) -> bool:
        """Whether `oxa rl` installs the transform at all (salvage, or diversity logging)."""
        return self.enabled or self.diversity != "off"


def _texts(batch: RolloutBatch) -> list[str]:
    return [c if isinstance(c, str) else c[-1]["content"] for c in batch.completions]


def is_synthetic(record: Mapping[str, Any]) -> bool:
    return all(k in record for k in SYNTH_FIELDS)


def position_bin(position: float) -> str:
    """The histogram bin of a relative position in [0, 1): ``0.0-0.2`` ... ``0.8-1.0``."""
    k = min(int(position * POSITION_BINS), POSITION_BINS - 1)
    return f"{k / POSITION_BINS:.1f}-{(k + 1) / POSITION_BINS:.1f}"


def choose_failures(failed: Sequence[bool], group_size: int, which: str, max_per_group: int | None) -> list[int]:
    """Rows to salvage: failed rows of each contiguous group of ``group_size`` (only of groups without a
    success when ``which`` is no_success), at most ``max_per_group`` per group, in row order."""
    chosen = []
    for start in range(0, len(failed), group_size):
        group = list(range(start, min(start + group_size, len(failed))))
        if which == "no_success" and not all(failed[i] for i in group):
            continue
        rows = [i for i in group if failed[i]]
        chosen += rows[:max_per_group] if max_per_group is not None else rows
    return chosen


def grade(trainer, inputs: Sequence[Mapping[str, Any]], completions: list[str],
          completion_ids: list[list[int]]) -> torch.Tensor:
    """[rows, reward functions] as the step's rollouts were graded (TRL's call), on this process only."""
    keys = [k for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")]
    kwargs = {k: [x[k] for x in inputs] for k in keys}
    out = torch.zeros(len(inputs), len(trainer.reward_funcs))
    for j, func in enumerate(trainer.reward_funcs):
        if isinstance(func, torch.nn.Module):
            raise OxaError("scope: salvage grades with function rewards only (the reward is a model)")
        values = func(prompts=[x["prompt"] for x in inputs], completions=completions, completion_ids=completion_ids,
                      trainer_state=trainer.state, **kwargs)
        out[:, j] = torch.tensor([float("nan") if v is None else float(v) for v in values])
    return out


class ScopeTransform:
    """The rollout transform of ``cfg`` (see the module docstring). ``records`` maps prompt ids to the full
    prompt records (a synthetic-world record carries the problem the checker and the teacher need)."""

    def __init__(self, cfg: ScopeConfig, records: Mapping[str, Mapping[str, Any]], output_dir: Path | None = None):
        self.cfg = cfg
        self.records = records
        self.output_dir = output_dir
        self._prm = self._corrector = None

    # ----------------------------------------------------------------------------------- pieces

    @property
    def prm(self):
        if self._prm is None:
            from oxa.prm.load import load_prm

            self._prm = load_prm(self.cfg.prm)
        return self._prm

    @property
    def corrector(self):
        if self._corrector is None:
            from oxa.prm.correct import ModelCorrector, TeacherCorrector

            self._corrector = (TeacherCorrector() if self.cfg.corrector == "teacher" else
                               ModelCorrector.from_config(self.cfg.corrector_model, separator=self.separator))
        return self._corrector

    @property
    def separator(self) -> str:
        return self.cfg.prm.step_split(self.prm.split).separator

    def record(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """The full prompt record of a trainer row (the row itself when its id is unknown)."""
        return self.records.get(str(row.get("id")), row)

    def check_records(self, records: Sequence[Mapping[str, Any]], where: str) -> None:
        """Refuse, before training, a checker or teacher on prompts that are not synthetic-world records."""
        needs = [n for n, on in (("the checker PRM", self.cfg.prm.prm == "checker"),
                                 ("the teacher corrector", self.cfg.corrector == "teacher")) if on]
        if self.cfg.enabled and needs and records and not is_synthetic(records[0]):
            missing = [k for k in SYNTH_FIELDS if k not in records[0]]
            raise OxaError(f"{where}: record 1: scope uses {' and '.join(needs)}, which need synthetic-world records "
                           f"(missing field(s) {', '.join(missing)}); set scope.prm.prm to a PRM model and "
                           f"scope.corrector to model, or scope.enabled false")

    # ------------------------------------------------------------------------------------ the transform

    def __call__(self, batch: RolloutBatch, trainer) -> RolloutBatch:
        texts = _texts(batch)
        records = [self.record(r) for r in batch.records]
        n = trainer.num_generations
        metrics: dict[str, float] = {}
        if self.cfg.diversity != "off":
            metrics.update(self.diversity(batch, n, "diversity"))
        if self.cfg.enabled:
            started = time.perf_counter()
            metrics.update(self.salvage(batch, trainer, records, texts, n))
            metrics["salvage/seconds"] = time.perf_counter() - started
            if self.cfg.diversity != "off":
                metrics.update(self.diversity(batch, n, "diversity_trained"))
        batch.metrics = {**batch.metrics, **metrics}
        return batch

    def diversity(self, batch: RolloutBatch, n: int, prefix: str) -> dict[str, float]:
        """Distinct answers and paths per group of ``batch`` as it stands (padding rows left out)."""
        from oxa.prm.diversity import diversity_metrics, group_diversity, synthetic_strategy

        texts = _texts(batch)
        groups = []
        for rows in batch.groups(n):
            record = self.record(batch.records[rows[0]])
            strategy = self.cfg.diversity == "strategy" or (self.cfg.diversity == "auto" and is_synthetic(record))
            path = (lambda i, r, rec=record: synthetic_strategy(rec, r)) if strategy else None
            groups.append(group_diversity([texts[i] for i in rows], path=path))
        return {k.replace("diversity/", f"{prefix}/"): v for k, v in diversity_metrics(groups).items()}

    def salvage(self, batch: RolloutBatch, trainer, records, texts: list[str], n: int) -> dict[str, float]:
        from oxa.prm.base import judge
        from oxa.prm.correct import CorrectionRequest, Salvage, encode_salvage, prm_verifier_agreement

        cfg = self.cfg
        totals = (batch.rewards * trainer.reward_weights.to(batch.rewards.device)).nansum(dim=1).tolist()
        failed = [t < cfg.success_reward for t in totals]
        prm = self.prm
        split = cfg.prm.step_split(prm.split)
        queries = [r["prompt"] for r in batch.records]
        judgements = judge(prm, prm.inputs(queries, texts, records, split=split), cfg.prm.threshold)
        metrics = {f"prm/{k}": v for k, v in prm_verifier_agreement([j.first_error for j in judgements],
                                                                   [not f for f in failed]).items()}
        chosen = choose_failures(failed, n, cfg.which, cfg.max_per_group)
        located = [i for i in chosen if judgements[i].first_error is not None]
        reference = cfg.corrector_model.reference_field if cfg.corrector == "model" else None
        requests = [CorrectionRequest(queries[i], judgements[i].steps, judgements[i].first_error, records[i],
                                      str(records[i][reference]) if reference and reference in records[i] else None)
                    for i in located]
        corrections = self.corrector.correct(requests) if requests else []
        salvages = {i: Salvage(q, c, self.separator) for i, q, c in zip(located, requests, corrections) if c}
        metrics.update({"salvage/sampled_reward_mean": sum(totals) / len(totals), "salvage/failed": float(sum(failed)),
                        "salvage/attempts": float(len(chosen)), "salvage/located": float(len(located)),
                        "salvage/corrected": float(len(salvages))})
        positions = [s.request.relative_position for s in salvages.values()]
        for i in range(POSITION_BINS):
            metrics[f"salvage/first_error_pos/{position_bin((i + 0.5) / POSITION_BINS)}"] = 0.0
        for p in positions:
            metrics[f"salvage/first_error_pos/{position_bin(p)}"] += 1.0
        if positions:
            metrics["salvage/first_error_pos_mean"] = sum(positions) / len(positions)

        tok = trainer.processing_class
        limit = trainer.max_completion_length
        rows, resumes, masks = [], [], []
        for i, s in salvages.items():
            ids, off = encode_salvage(tok, s)
            if len(ids) < limit:  # room for at least one more token (the EOS of a finished salvage)
                rows.append(i)
                resumes.append(ids)
                masks.append(off)
        tails = self.continue_rollouts(trainer, batch, rows, resumes, [salvages[i].done for i in rows])
        new_ids = [r + t for r, t in zip(resumes, tails)]
        new_masks = [m + [False] * len(t) for m, t in zip(masks, tails)]
        new_texts = tok.batch_decode(new_ids, skip_special_tokens=True)
        new_rewards = grade(trainer, [batch.records[i] for i in rows], new_texts, new_ids) if rows else None
        successes = 0
        placed: dict[int, Rollout] = {}
        log = []
        for k, i in enumerate(rows):
            total = float((new_rewards[k] * trainer.reward_weights.cpu()).nansum())
            ok = total >= cfg.success_reward
            successes += ok
            if ok or cfg.keep_failed_salvages:
                placed[i] = Rollout(new_ids[k], new_texts[k], new_rewards[k], new_masks[k])
            s = salvages[i]
            log.append({"id": batch.records[i].get("id"), "row": i, "response": texts[i],
                        "first_error": s.request.error, "steps": len(s.request.steps),
                        "relative_position": s.request.relative_position, "wrong_step": s.request.wrong_step,
                        "correction": s.correction, "salvaged": new_texts[k], "reward": total,
                        "off_policy_tokens": sum(new_masks[k]), PLACED[cfg.placement]: i in placed})
        if cfg.placement == "replace":
            for i, rollout in placed.items():
                batch.replace(i, rollout)
        else:  # every process lays out the same number of rows, whatever it salvaged
            slots = join_slots(cfg.max_per_group or n, len(failed) // n, trainer.args.steps_per_generation)
            batch.join(placed, n, slots, tok.eos_token_id)
        metrics.update({"salvage/successes": float(successes),
                        "salvage/success_share": successes / len(chosen) if chosen else 0.0})
        metrics.update({f"salvage/{key}": float(len(placed) if placement == cfg.placement else 0)
                        for placement, key in PLACED.items()})
        self.write_log(trainer, log)
        return metrics

    def continue_rollouts(self, trainer, batch: RolloutBatch, rows: list[int], resumes: list[list[int]],
                          done: list[bool]) -> list[list[int]]:
        """The policy's continuation of each resumed row (EOS alone for a finished one), sampled as rollouts
        are: temperature, top-p, the remaining token budget, a seed per (seed, step, global row)."""
        from oxa.generation import SamplingParams, sample_seed
        from oxa.rl.rollout import sample_rollouts

        eos = trainer.processing_class.eos_token_id
        tails: list[list[int]] = [[eos] if d else [] for d in done]
        todo = [k for k, d in enumerate(done) if not d]
        if not todo:
            return tails
        first = trainer.accelerator.process_index * len(batch.completion_ids)
        step = trainer.state.global_step
        with _generation_model(trainer) as model:
            for budget in sorted({trainer.max_completion_length - len(resumes[k]) for k in todo}):
                same = [k for k in todo if trainer.max_completion_length - len(resumes[k]) == budget]
                params = SamplingParams(temperature=trainer.temperature, top_p=trainer.top_p, max_new_tokens=budget)
                seeds = [sample_seed(trainer.args.seed, f"scope-step-{step}", first + rows[k]) for k in same]
                prompts = [list(batch.prompt_ids[rows[k]]) + resumes[k] for k in same]
                out = sample_rollouts(model, trainer.processing_class, prompts, seeds, params,
                                      batch_size=trainer.rl.rollout_batch_size)
                for k, ids in zip(same, out):
                    tails[k] = list(ids)
        return tails

    def write_log(self, trainer, rows: list[dict]) -> None:
        if not (self.cfg.log_salvages and self.output_dir and rows):
            return
        from oxa.rl.metrics import MetricsFile

        rank = trainer.accelerator.process_index
        path = Path(self.output_dir) / ("salvage.jsonl" if rank == 0 else f"salvage.rank{rank}.jsonl")
        file = MetricsFile(path)
        for r in rows:
            file.append({"step": trainer.state.global_step, **r})


@contextmanager
def _generation_model(trainer):
    """The policy ready to sample (unwrapped from DDP / DeepSpeed as TRL does for its own generation)."""
    from trl.models import unwrap_model_for_generation

    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                     gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs) as model:
        yield model
