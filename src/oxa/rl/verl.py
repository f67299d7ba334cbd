"""The bridge to verl: run the same RL data, prompt and reward on a GPU cluster with verl (0.9).

``oxa rl --export verl`` writes a directory a verl installation can run as it is:

* ``train.parquet`` and ``val-<name>.parquet``: verl's RL data format (``data_source``, ``prompt`` as
  chat messages built by oxa's prompt format - the same turns every oxa stage tokenizes - ``ability``,
  ``reward_model {style: rule, ground_truth}``, ``extra_info {index, split, id}``);
* ``oxa_reward.py``: a custom reward with verl's signature
  ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`` that grades with
  oxa's reward (:class:`oxa.rl.reward.MathReward`) under the exported settings;
* ``run_verl.sh``: ``python3 -m verl.trainer.main_ppo`` with the settings mapped to verl's keys
  (defaults: the authors' runs, reference.md section 9). Arguments given to the script are appended as
  further Hydra overrides, so ``./run_verl.sh trainer.nnodes=4`` changes one thing;
* ``export.json``: the settings and row counts.

verl applies the model's chat template to ``prompt`` itself, as oxa does with
:func:`oxa.prompting.prompt_messages`; a prompt format without a template cannot be expressed and is refused.
The reward module needs oxa importable where verl's reward workers run (``pip install oxa``; the reward
needs only pydantic, PyYAML and math-verify of oxa's dependencies).
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from oxa.config import StageConfig
from oxa.errors import OxaError
from oxa.io import write_json, write_records, write_text
from oxa.prompting import PromptFormat, prompt_messages
from oxa.records import Fields
from oxa.rl.prompts import load_prompts
from oxa.rl.reward import RewardConfig
from oxa.verify import Gold, gold_answers

REWARD_FILE = "oxa_reward.py"
SCRIPT_FILE = "run_verl.sh"
TRAIN_FILE = "train.parquet"
_LOSS_MODES = {"vanilla": "vanilla", "clip-cov": "clip_cov", "kl-cov": "kl_cov"}


class VerlExportConfig(StageConfig):
    """What ``oxa rl --export verl`` writes. Names match ``oxa rl``'s settings, so a run's config exports
    as it is (:func:`export_settings`); defaults are the authors' verl runs on Qwen2.5-Math."""

    model: str = Field(description="Policy to start from, as verl's workers will see it (a path on the cluster or a hub id).")
    output_dir: Path | None = Field(None, description="verl's checkpoint directory (trainer.default_local_dir); "
                                    "default: checkpoints/ inside the export directory.")
    prompts: str = Field("deepscaler", description="RL prompts: a data set name, a record file or a verl parquet.")
    limit: int | None = Field(None, ge=1, description="Export only the first LIMIT training prompts.")
    val_prompts: list[str] = Field(default_factory=lambda: ["aime24-val"], description="Validation sets (names or "
                                   "files), one parquet each; verl reports each under its name.")
    data_dir: Path | None = Field(None, description="Where named data sets are looked for.")
    fields: Fields = Field(default_factory=Fields, description="Field names of the prompt records.")
    prompt: PromptFormat = Field(default_factory=PromptFormat, description="How a query becomes the prompt messages.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="The reward the exported module computes.")

    max_prompt_length: int = Field(1536, ge=1, description="Longer prompts are dropped (data.filter_overlong_prompts).")
    max_response_length: int = Field(16384, ge=1, description="Rollout token budget (18,432 for the 1.5B OXA_Full run).")
    num_generations: int = Field(8, ge=2, description="Rollouts per prompt (actor_rollout_ref.rollout.n).")
    temperature: float = Field(0.85, gt=0, description="Rollout temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus sampling.")
    prompts_per_step: int = Field(64, ge=1, description="Prompts per rollout batch (data.train_batch_size).")
    updates_per_rollout_batch: int = Field(1, ge=1, description="Optimizer steps per rollout batch "
                                           "(ppo_mini_batch_size = prompts_per_step / this).")
    policy_loss: Literal["vanilla", "clip-cov", "kl-cov"] = Field("vanilla", description="verl's policy_loss.loss_mode.")
    clip_ratio_low: float = Field(0.2, ge=0, description="PPO clip, lower side.")
    clip_ratio_high: float = Field(0.2, ge=0, description="PPO clip, upper side.")
    clip_ratio_c: float | None = Field(3.0, gt=1, description="Dual clip constant; null: verl's default.")
    clip_cov_ratio: float = Field(2e-4, gt=0, le=1, description="Clip-Cov: share of tokens whose gradient is dropped.")
    clip_cov_lb: float = Field(1.0, description="Clip-Cov: lower covariance bound of candidates.")
    clip_cov_ub: float = Field(5.0, description="Clip-Cov: upper covariance bound of candidates.")
    kl_cov_ratio: float = Field(2e-3, gt=0, le=1, description="KL-Cov: share of tokens penalised.")
    kl_cov_coef: float = Field(1.0, ge=0, description="KL-Cov: weight of |logp - logp_old| (verl's ppo_kl_coef).")
    kl_coef: float = Field(0.001, ge=0, description="Low-variance KL loss to the starting model; 0: no KL loss.")
    entropy_coef: float = Field(0.0, description="Entropy bonus weight.")
    loss_aggregation: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = Field(
        "token-mean", description="verl's loss_agg_mode.")
    scale_rewards: Literal["group", "none"] = Field("group", description="group: GRPO's std-normalised advantages; "
                                                    "none: Dr. GRPO (verl has no batch-std option).")
    learning_rate: float = Field(2e-6, gt=0, description="Actor learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    num_train_epochs: int = Field(20, ge=1, description="Passes over the prompts (the authors set 20 and picked a checkpoint).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (trainer.total_training_steps).")
    seed: int = Field(0, description="Seed of the prompt order (data.seed).")
    save_steps: int | None = Field(20, ge=1, description="Checkpoint every N steps; null: never.")
    eval_every: int | None = Field(None, ge=1, description="Validate every N steps (trainer.test_freq); null: never, "
                                   "as the authors, who evaluated saved checkpoints.")
    val_before_train: bool = Field(False, description="Validate the starting model first.")
    val_n: int = Field(8, ge=1, description="Validation samples per problem.")
    val_temperature: float = Field(0.6, ge=0, description="Validation temperature.")
    val_top_p: float = Field(0.95, gt=0, le=1, description="Validation nucleus sampling.")
    n_gpus_per_node: int = Field(8, ge=1, description="GPUs per node.")
    nnodes: int = Field(1, ge=1, description="Nodes.")
    project_name: str = Field("oxa", description="trainer.project_name (logger grouping).")
    experiment_name: str = Field("grpo", description="trainer.experiment_name.")
    loggers: list[str] = Field(default_factory=lambda: ["console"], description="trainer.logger (console, wandb, tensorboard).")


def export_settings(cfg: Any, **overrides: Any) -> VerlExportConfig:
    """A :class:`VerlExportConfig` from ``oxa rl``'s settings (any object or mapping with the same field
    names; its ``eval`` section gives the validation sets and their sampling); ``overrides`` win."""
    if isinstance(cfg, VerlExportConfig):
        return cfg.model_copy(update=overrides) if overrides else cfg
    data = _plain(cfg)
    settings = {k: v for k, v in data.items() if k in VerlExportConfig.model_fields and v is not None}
    if "num_train_epochs" in settings:  # oxa rl takes fractions of an epoch, verl whole epochs
        settings["num_train_epochs"] = max(1, math.ceil(settings["num_train_epochs"]))
    ev = data.get("eval") or {}
    for ours, theirs in (("val_prompts", "benchmarks"), ("val_n", "n"), ("val_temperature", "temperature"),
                         ("val_top_p", "top_p"), ("eval_every", "every"), ("val_before_train", "at_start")):
        if ev.get(theirs) not in (None, []):
            settings[ours] = ev[theirs]
    return VerlExportConfig.model_validate({**settings, **overrides})


def _plain(cfg: Any) -> dict[str, Any]:
    """A settings object as a plain mapping (pydantic models dumped, nested ones included)."""
    if isinstance(cfg, BaseModel):
        return cfg.model_dump()
    if isinstance(cfg, dict):
        return {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in cfg.items()}
    raise TypeError(f"settings must be a pydantic model or a mapping, got {type(cfg).__name__}")


# -------------------------------------------------------------------------------------------- data


def verl_rows(records: list[dict], fmt: PromptFormat, *, data_source: str, split: str) -> list[dict]:
    """Prompt records as verl RL rows. ``ground_truth`` is the gold as the record writes it, as text (the
    reward normalises it when grading); when any record has several accepted answers (Minerva), every
    row holds a list of texts (one Parquet column type)."""
    golds = [_gold_texts(r["answer"]) for r in records]
    as_lists = any(len(g) > 1 for g in golds)
    return [{"data_source": data_source,
             "prompt": prompt_messages(r["query"], fmt),
             "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": g if as_lists else g[0]},
             "extra_info": {"index": i, "split": split, "id": str(r["id"])}}
            for i, (r, g) in enumerate(zip(records, golds))]


def _gold_texts(answer: Gold) -> list[str]:
    """The accepted answers as texts: strings as they are (stripped), numbers as the grader writes them."""
    values = list(answer) if isinstance(answer, (list, tuple)) else [answer]
    return [v.strip() if isinstance(v, str) else gold_answers(v)[0] for v in values]


def _source_name(spec: str) -> str:
    """``deepscaler`` for a data set name, the file stem for a path."""
    p = Path(spec)
    return p.stem if p.suffix or p.is_dir() else spec


# ------------------------------------------------------------------------------------ reward module


_REWARD_MODULE = '''"""verl custom reward: oxa's verifiable math reward with the settings it was exported with.

Written by `oxa rl --export verl`. verl loads it from reward.custom_reward_function.path and calls
compute_score once per rollout, from several threads of each reward worker process; grading is serialised
through one oxa grading process per worker process, which enforces the per-answer deadline.
"""

import threading

from oxa.rl.reward import MathReward, RewardConfig

SETTINGS = RewardConfig.model_validate_json({settings!r})
_reward = None
_lock = threading.Lock()


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """1.0 if the rollout's final answer equals the gold (a text, or a list where any may match), else 0.0."""
    global _reward
    if not isinstance(ground_truth, str):
        ground_truth = list(ground_truth)  # a list column arrives as a numpy array
    with _lock:
        if _reward is None:
            _reward = MathReward(SETTINGS)
        return _reward.grade([solution_str], [ground_truth])[0].reward
'''


def reward_module_source(reward: RewardConfig) -> str:
    """The text of ``oxa_reward.py`` for ``reward`` (one grading process: calls come one at a time)."""
    return _REWARD_MODULE.format(settings=reward.model_copy(update={"workers": 1}).model_dump_json())


# ----------------------------------------------------------------------------------- command line


def verl_overrides(cfg: VerlExportConfig, *, train_file: str, val_files: list[str], reward_file: str,
                   output_dir: str) -> list[str]:
    """Hydra overrides of ``verl.trainer.main_ppo`` (verl 0.9 keys) for ``cfg``. File arguments are
    written into the overrides as given (the script passes shell-expanded paths)."""
    if cfg.prompts_per_step % cfg.updates_per_rollout_batch:
        raise OxaError(f"prompts_per_step ({cfg.prompts_per_step}) must be divisible by "
                       f"updates_per_rollout_batch ({cfg.updates_per_rollout_batch})")
    total = cfg.max_prompt_length + cfg.max_response_length
    tokens_per_gpu = max(32768, total)  # the authors' 32,768; never below one whole sequence
    actor, rollout = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"

    def hydra_list(items: list[str]) -> str:
        return "[" + ",".join(f"'{x}'" for x in items) + "]"

    o = [
        "algorithm.adv_estimator=grpo",
        f"algorithm.norm_adv_by_std_in_grpo={cfg.scale_rewards == 'group'}",
        "algorithm.use_kl_in_reward=False",
        "algorithm.kl_ctrl.kl_coef=0",
        f"data.train_files={hydra_list([train_file])}",
        *([f"data.val_files={hydra_list(val_files)}"] if val_files else []),
        "data.prompt_key=prompt",
        f"data.train_batch_size={cfg.prompts_per_step}",
        f"data.max_prompt_length={cfg.max_prompt_length}",
        f"data.max_response_length={cfg.max_response_length}",
        "data.filter_overlong_prompts=True",
        "data.truncation=error",
        f"data.seed={cfg.seed}",
        f"actor_rollout_ref.model.path={cfg.model}",
        "actor_rollout_ref.model.use_remove_padding=True",
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",
        f"{actor}.optim.lr={cfg.learning_rate}",
        f"{actor}.optim.weight_decay={cfg.weight_decay}",
        f"{actor}.grad_clip={cfg.max_grad_norm}",
        f"{actor}.ppo_mini_batch_size={cfg.prompts_per_step // cfg.updates_per_rollout_batch}",
        f"{actor}.use_dynamic_bsz=True",
        f"{actor}.ppo_max_token_len_per_gpu={tokens_per_gpu}",
        f"{actor}.use_kl_loss={cfg.kl_coef > 0}",
        f"{actor}.kl_loss_coef={cfg.kl_coef}",
        f"{actor}.kl_loss_type=low_var_kl",
        f"{actor}.entropy_coeff={cfg.entropy_coef}",
        f"{actor}.loss_agg_mode={cfg.loss_aggregation}",
        f"{actor}.clip_ratio_low={cfg.clip_ratio_low}",
        f"{actor}.clip_ratio_high={cfg.clip_ratio_high}",
        f"{actor}.policy_loss.loss_mode={_LOSS_MODES[cfg.policy_loss]}",
    ]
    if cfg.clip_ratio_c is not None:
        o.append(f"{actor}.clip_ratio_c={cfg.clip_ratio_c}")
    if cfg.policy_loss == "clip-cov":
        o += [f"{actor}.policy_loss.clip_cov_ratio={cfg.clip_cov_ratio}",
              f"{actor}.policy_loss.clip_cov_lb={cfg.clip_cov_lb}", f"{actor}.policy_loss.clip_cov_ub={cfg.clip_cov_ub}"]
    elif cfg.policy_loss == "kl-cov":
        o += [f"{actor}.policy_loss.kl_cov_ratio={cfg.kl_cov_ratio}", f"{actor}.policy_loss.ppo_kl_coef={cfg.kl_cov_coef}"]
    o += [
        "actor_rollout_ref.ref.fsdp_config.param_offload=True",
        f"{rollout}.name=vllm",
        f"{rollout}.tensor_model_parallel_size=1",
        f"{rollout}.gpu_memory_utilization=0.85",
        f"{rollout}.max_num_batched_tokens={tokens_per_gpu}",
        f"{rollout}.n={cfg.num_generations}",
        f"{rollout}.temperature={cfg.temperature}",
        f"{rollout}.top_p={cfg.top_p}",
        f"{rollout}.val_kwargs.n={cfg.val_n}",
        f"{rollout}.val_kwargs.do_sample={cfg.val_temperature > 0}",
        f"{rollout}.val_kwargs.temperature={cfg.val_temperature}",
        f"{rollout}.val_kwargs.top_p={cfg.val_top_p}",
        f"reward.custom_reward_function.path={reward_file}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.critic_warmup=0",
        f"trainer.logger=[{','.join(cfg.loggers)}]",
        f"trainer.project_name={cfg.project_name}",
        f"trainer.experiment_name={cfg.experiment_name}",
        f"trainer.val_before_train={cfg.val_before_train}",
        f"trainer.n_gpus_per_node={cfg.n_gpus_per_node}",
        f"trainer.nnodes={cfg.nnodes}",
        f"trainer.save_freq={cfg.save_steps or -1}",
        f"trainer.test_freq={cfg.eval_every or -1}",
        f"trainer.total_epochs={cfg.num_train_epochs}",
        f"trainer.default_local_dir={output_dir}",
    ]
    if cfg.max_steps is not None:
        o.append(f"trainer.total_training_steps={cfg.max_steps}")
    return o


def _script(overrides: list[str]) -> str:
    """``run_verl.sh``: paths relative to the script's directory, extra arguments appended."""
    lines = ["#!/usr/bin/env bash",
             "# GRPO with verl (0.9) on data, prompts and reward exported by `oxa rl --export verl`.",
             "# Further Hydra overrides given to this script are appended and win: ./run_verl.sh trainer.nnodes=2",
             "# PYTHON selects the interpreter of the environment that has verl and oxa (default python3).",
             "set -euo pipefail",
             'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
             "${PYTHON:-python3} -m verl.trainer.main_ppo \\"]
    for o in overrides:
        key, value = o.split("=", 1)
        # $HERE must expand: double-quote the values that use it, shell-quote the rest
        quoted = f'"{o}"' if "$HERE" in value else shlex.quote(o)
        lines.append(f"    {quoted} \\")
    lines.append('    "$@"')
    return "\n".join(lines) + "\n"


def export_verl(cfg_or_settings: Any, out_dir: str | Path) -> dict[str, Any]:
    """Write the verl run directory for ``cfg_or_settings`` (see the module docstring) into ``out_dir``;
    returns what ``export.json`` holds (files, row counts, settings)."""
    cfg = export_settings(cfg_or_settings)
    if not cfg.prompt.template:
        raise OxaError("verl applies the model's chat template to every prompt; a prompt format without "
                       "a template (prompt.template: false) cannot be exported")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_prompts(cfg.prompts, fields=cfg.fields, limit=cfg.limit, data_dir=cfg.data_dir)
    counts = {TRAIN_FILE: write_records(out / TRAIN_FILE, verl_rows(train, cfg.prompt, data_source=_source_name(cfg.prompts),
                                                                    split="train"))}
    val_files = []
    for spec in cfg.val_prompts:
        name = _source_name(spec)
        val_files.append(f"val-{name}.parquet")
        if val_files[-1] in val_files[:-1]:
            raise OxaError(f"two validation sets are both named {name!r}")
        rows = verl_rows(load_prompts(spec, fields=cfg.fields, data_dir=cfg.data_dir), cfg.prompt, data_source=name, split="test")
        counts[val_files[-1]] = write_records(out / val_files[-1], rows)
    write_text(out / REWARD_FILE, reward_module_source(cfg.reward))
    output_dir = str(cfg.output_dir) if cfg.output_dir is not None else "$HERE/checkpoints"
    overrides = verl_overrides(cfg, train_file=f"$HERE/{TRAIN_FILE}", val_files=[f"$HERE/{f}" for f in val_files],
                               reward_file=f"$HERE/{REWARD_FILE}", output_dir=output_dir)
    script = out / SCRIPT_FILE
    write_text(script, _script(overrides))
    script.chmod(0o755)
    summary = {"files": {"train": TRAIN_FILE, "val": val_files, "reward": REWARD_FILE, "script": SCRIPT_FILE},
               "rows": counts, "settings": cfg.model_dump(mode="json")}
    write_json(out / "export.json", summary)
    return summary
