"""The bridge to verl: run the same RL data, prompt and reward on a GPU cluster with verl (0.9).

``oxa rl --export verl`` writes a directory a verl installation can run as it is:

* ``train.parquet`` and ``val-<name>.parquet``: verl's RL data format (``data_source``, ``prompt`` as
  chat messages built by oxa's prompt format - the same turns every oxa stage tokenizes - ``ability``,
  ``reward_model {style: rule, ground_truth}``, ``extra_info {index, split, id}``);
* ``oxa_reward.py``: a custom reward with verl's signature
  ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`` that grades with
  oxa's reward (:class:`oxa.rl.reward.MathReward`) under the exported settings;
* ``run_verl.sh``: ``python3 -m verl.trainer.main_ppo`` with ``oxa rl``'s settings (:class:`RLConfig`,
  the one declaration of every setting) mapped to verl's keys, plus the few only a cluster has
  (:class:`VerlOptions`: nodes, GPUs, names). Arguments given to the script are appended as further Hydra
  overrides, so ``./run_verl.sh trainer.nnodes=4`` changes one thing;
* ``export.json``: the settings and row counts.

A setting verl would not honour (batch-std advantages, TRL-only arguments, ...) is refused in one line
(:func:`check_exportable`) rather than silently dropped. How the run executes on this machine - rollout
backend, micro-batches, precision, DeepSpeed - is verl's own business there (vLLM rollouts, dynamic
token batches, FSDP in bf16); ``eval.best_by`` has no verl counterpart: verl logs the validation scores
per step and keeps every ``save_steps`` checkpoint, from which the best is picked, as the authors did.

verl applies the model's chat template to ``prompt`` itself, as oxa does with
:func:`oxa.prompting.prompt_messages`; a prompt format without a template cannot be expressed and is refused.
The reward module needs oxa importable where verl's reward workers run (``pip install oxa``; the reward
needs only pydantic, PyYAML and math-verify of oxa's dependencies).
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.errors import OxaError
from oxa.io import write_json, write_records, write_text
from oxa.prompting import PromptFormat, prompt_messages
from oxa.rl.prompts import load_prompts
from oxa.rl.reward import RewardConfig
from oxa.verify import Gold, gold_answers

if TYPE_CHECKING:
    from oxa.rl.config import RLConfig

REWARD_FILE = "oxa_reward.py"
SCRIPT_FILE = "run_verl.sh"
TRAIN_FILE = "train.parquet"
_LOSS_MODES = {"vanilla": "vanilla", "clip-cov": "clip_cov", "kl-cov": "kl_cov"}
_LOGGERS = ("wandb", "tensorboard", "mlflow", "swanlab", "clearml")  # verl's trackers beside the console
_SCHEDULERS = ("constant", "cosine")  # verl's actor.optim.lr_scheduler_type


class VerlOptions(StageConfig):
    """What only a verl cluster run has; every other setting is ``oxa rl``'s own (:class:`RLConfig`)."""

    nnodes: int = Field(1, ge=1, description="Nodes of the verl run (trainer.nnodes).",
                        json_schema_extra=cli(section="Export to verl"))
    n_gpus_per_node: int = Field(8, ge=1, description="GPUs per node of the verl run (trainer.n_gpus_per_node; the "
                                 "authors: 8).")
    project_name: str = Field("oxa", description="The verl run's trainer.project_name (logger grouping).")
    experiment_name: str | None = Field(None, description="The verl run's trainer.experiment_name (default: the name "
                                        "of output_dir).")


def check_exportable(cfg: RLConfig) -> None:
    """Refuse, in one line, the first setting of ``cfg`` a verl run would not honour."""
    problem = next((p for p in _problems(cfg) if p), None)
    if problem:
        raise OxaError(f"cannot export to verl: {problem}")


def _problems(cfg: RLConfig):
    yield not cfg.prompt.template and ("prompt.template false: verl applies the model's chat template to every "
                                       "prompt")
    yield cfg.prompt.chat_template is not None and ("prompt.chat_template: verl applies the tokenizer's own template; "
                                                    "save this one in the model directory's tokenizer instead")
    yield cfg.scale_rewards == "batch" and ("scale_rewards batch: verl's GRPO divides advantages by the group's std "
                                            "or not at all (group | none)")
    yield cfg.mask_truncated_completions and "mask_truncated_completions: verl has no such setting"
    yield cfg.clip_ratio_c is None and ("clip_ratio_c null (no dual clip): verl always applies it; give a large value "
                                        "such as 1.0e9 instead")
    yield cfg.max_grad_norm == 0 and "max_grad_norm 0 (no clipping): verl always clips the gradient norm"
    yield cfg.lr_scheduler_type not in _SCHEDULERS and (f"lr_scheduler_type {cfg.lr_scheduler_type}: verl has "
                                                         f"{' and '.join(_SCHEDULERS)}")
    yield cfg.max_steps is None and cfg.num_train_epochs % 1 and (
        f"num_train_epochs {cfg.num_train_epochs}: verl runs whole epochs; give a whole number or max_steps")
    for name, steps in (("max_steps", cfg.max_steps), ("save_steps", cfg.save_steps), ("eval.every", cfg.eval.every)):
        yield steps is not None and steps % cfg.updates_per_rollout_batch and (
            f"{name} ({steps}) is not a multiple of updates_per_rollout_batch ({cfg.updates_per_rollout_batch}): "
            "verl counts rollout batches")
    yield cfg.resume_from_checkpoint not in (None, "latest") and (
        f"resume_from_checkpoint {cfg.resume_from_checkpoint}: verl resumes its own checkpoints only ('latest' or none)")
    yield cfg.eval.max_new_tokens not in (None, cfg.max_response_length) and (
        "eval.max_new_tokens: verl validates with the rollout budget (max_response_length)")
    unknown = [r for r in cfg.report_to if r != "none" and r not in _LOGGERS]
    yield unknown and f"report_to {', '.join(unknown)}: verl logs to {', '.join(('console', *_LOGGERS))}"
    yield cfg.trl_args and f"trl_args ({', '.join(cfg.trl_args)}): TRL settings have no verl meaning"
    yield cfg.scope.enabled and ("scope.enabled: verl has no step-wise salvage of failed rollouts; export the "
                                 "plain GRPO run (scope.enabled false)")


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


def verl_overrides(cfg: RLConfig, verl: VerlOptions, *, train_file: str, val_files: list[str], reward_file: str,
                   output_dir: str) -> list[str]:
    """Hydra overrides of ``verl.trainer.main_ppo`` (verl 0.9 keys) for ``cfg``. File arguments are
    written into the overrides as given (the script passes shell-expanded paths). oxa counts optimizer
    steps, verl rollout batches: step settings are divided by ``updates_per_rollout_batch``."""
    check_exportable(cfg)
    total = cfg.max_prompt_length + cfg.max_response_length
    tokens_per_gpu = max(32768, total)  # the authors' 32,768; never below one whole sequence
    batches = cfg.updates_per_rollout_batch
    actor, rollout, ev = "actor_rollout_ref.actor", "actor_rollout_ref.rollout", cfg.eval

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
        f"{actor}.optim.lr_scheduler_type={cfg.lr_scheduler_type}",
        f"{actor}.optim.lr_warmup_steps_ratio={cfg.warmup_ratio}",
        f"{actor}.optim.weight_decay={cfg.weight_decay}",
        f"{actor}.grad_clip={cfg.max_grad_norm}",
        f"{actor}.ppo_mini_batch_size={cfg.prompts_per_step // batches}",
        f"{actor}.use_dynamic_bsz=True",
        f"{actor}.ppo_max_token_len_per_gpu={tokens_per_gpu}",
        f"{actor}.use_kl_loss={cfg.kl_coef > 0}",
        f"{actor}.kl_loss_coef={cfg.kl_coef}",
        f"{actor}.kl_loss_type=low_var_kl",
        f"{actor}.entropy_coeff={cfg.entropy_coef}",
        f"{actor}.loss_agg_mode={cfg.loss_aggregation}",
        f"{actor}.clip_ratio_low={cfg.clip_ratio_low}",
        f"{actor}.clip_ratio_high={cfg.clip_ratio_high}",
        f"{actor}.clip_ratio_c={cfg.clip_ratio_c}",
        f"{actor}.policy_loss.loss_mode={_LOSS_MODES[cfg.policy_loss]}",
    ]
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
        f"{rollout}.val_kwargs.n={ev.n}",
        f"{rollout}.val_kwargs.do_sample={ev.temperature > 0}",
        f"{rollout}.val_kwargs.temperature={ev.temperature}",
        f"{rollout}.val_kwargs.top_p={ev.top_p}",
        f"reward.custom_reward_function.path={reward_file}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.critic_warmup=0",
        f"trainer.logger=[{','.join(['console', *(r for r in cfg.report_to if r != 'none')])}]",
        f"trainer.project_name={verl.project_name}",
        f"trainer.experiment_name={verl.experiment_name or Path(cfg.output_dir).name}",
        f"trainer.val_before_train={bool(val_files) and ev.at_start}",
        f"trainer.n_gpus_per_node={verl.n_gpus_per_node}",
        f"trainer.nnodes={verl.nnodes}",
        f"trainer.save_freq={cfg.save_steps // batches if cfg.save_steps else -1}",
        f"trainer.test_freq={ev.every // batches if val_files else -1}",
        # verl stops at whichever comes first, the epochs or total_training_steps; with max_steps set, as many
        # epochs as steps (each holds at least one batch) lets the steps decide, as max_steps does in oxa
        f"trainer.total_epochs={cfg.max_steps // batches if cfg.max_steps else math.ceil(cfg.num_train_epochs)}",
        f"trainer.resume_mode={'auto' if cfg.resume_from_checkpoint == 'latest' else 'disable'}",
        f"trainer.default_local_dir={output_dir}",
    ]
    if cfg.save_total_limit is not None:
        o.append(f"trainer.max_actor_ckpt_to_keep={cfg.save_total_limit}")
    if cfg.max_steps is not None:
        o.append(f"trainer.total_training_steps={cfg.max_steps // batches}")
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


def export_verl(cfg: RLConfig, out_dir: str | Path, verl: VerlOptions | None = None) -> dict[str, Any]:
    """Write the verl run directory of ``cfg`` (see the module docstring) into ``out_dir``; returns what
    ``export.json`` holds (files, row counts, settings). Refuses settings verl would not honour."""
    import oxa.synth  # noqa: F401  (registers the synthetic world's benchmarks for eval.benchmarks)

    verl = verl or VerlOptions()
    check_exportable(cfg)
    train = load_prompts(cfg.prompts, fields=cfg.fields, limit=cfg.limit, data_dir=cfg.data_dir)
    if cfg.prefilter.enabled:  # the prompts verl trains on are the ones oxa rl would: filtered by the start model
        from oxa.rl.prefilter import prefilter_prompts

        train = prefilter_prompts(train, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = verl_rows(train, cfg.prompt, data_source=_source_name(cfg.prompts), split="train")
    counts = {TRAIN_FILE: write_records(out / TRAIN_FILE, rows)}
    val_files = []
    for spec in cfg.eval.benchmarks:
        name = _source_name(spec)
        val_files.append(f"val-{name}.parquet")
        if val_files[-1] in val_files[:-1]:
            raise OxaError(f"two validation sets are both named {name!r}")
        val = load_prompts(spec, fields=cfg.fields, limit=cfg.eval.limit, data_dir=cfg.data_dir)
        counts[val_files[-1]] = write_records(out / val_files[-1], verl_rows(val, cfg.prompt, data_source=name, split="test"))
    write_text(out / REWARD_FILE, reward_module_source(cfg.reward))
    overrides = verl_overrides(cfg, verl, train_file=f"$HERE/{TRAIN_FILE}", val_files=[f"$HERE/{f}" for f in val_files],
                               reward_file=f"$HERE/{REWARD_FILE}", output_dir="$HERE/checkpoints")
    script = out / SCRIPT_FILE
    write_text(script, _script(overrides))
    script.chmod(0o755)
    summary = {"files": {"train": TRAIN_FILE, "val": val_files, "reward": REWARD_FILE, "script": SCRIPT_FILE},
               "rows": counts, "settings": cfg.model_dump(mode="json"), "verl": verl.model_dump(mode="json")}
    write_json(out / "export.json", summary)
    return summary
