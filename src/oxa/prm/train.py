"""Training a separator-style PRM: a causal LM's body plus a 2-class head, supervised at the step marks.

Each example is a question, its steps and one label per step (TRL's stepwise-supervision format:
``prompt``, ``completions``, ``labels``). It is encoded by :func:`oxa.prm.hf.encode_separator_steps` -
the same function scoring uses, so the model is scored on exactly the layout it learned - and the
loss is the token-classification cross-entropy at the ``<extra_0>`` marks only (every other position
is labelled -100). A transformers ``Trainer`` runs it; the result is an ordinary
``AutoModelForTokenClassification`` directory that :func:`oxa.prm.load_prm` loads as a separator PRM.

Without a data file the examples are the synthetic world's planted-error trajectories on problems
outside the held-out part (:func:`oxa.prm.bench.planted_records` with ``held_out=False``), each cut
after its first error (:func:`oxa.prm.bench.stepwise_records`), so a PRM trained here is measured on
problems it never saw. (TRL 1.x no longer ships its PRM trainer, hence
this small one.)
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt

from oxa.config import StageConfig
from oxa.errors import RecordError
from oxa.io import read_records, write_json
from oxa.prm.hf import QWEN_PRM_SYSTEM, STEP_TOKEN, encode_separator_steps

IGNORE = -100


class PRMTrainConfig(StageConfig):
    """Settings of PRM training."""

    base: str = Field(description="the causal LM to start from (a local directory or hub id); its body is kept, "
                      "a fresh 2-class head is added")
    output: Path = Field(description="directory to write the trained PRM to")
    data: Path | None = Field(None, description="stepwise-supervision records (prompt, completions, labels); none: "
                              "the synthetic world's planted-error trajectories")
    synthetic_problems: PositiveInt = Field(600, description="without data: problems to plant errors in (each gives "
                                            "one right trajectory and one per slip kind)")
    after_error: Literal["drop", "wrong"] = Field("drop", description="without data: the steps after a planted first "
                                                  "error are left out (drop) or labelled wrong")
    prompt_field: str = Field("prompt", description="field holding the question")
    steps_field: str = Field("completions", description="field holding the list of steps")
    labels_field: str = Field("labels", description="field holding one true/false label per step")
    step_token: str = Field(STEP_TOKEN, description="the mark after every step")
    system: str | None = Field(QWEN_PRM_SYSTEM, description="the system turn (none if empty)")
    template: bool = Field(True, description="render with the chat template (off: TRL's PRM layout)")
    max_len: PositiveInt = Field(1024, description="tokens per example; marks beyond it are not trained on")
    epochs: float = Field(1.0, gt=0, description="passes over the examples")
    batch_size: PositiveInt = Field(16, description="examples per optimizer step")
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate (cosine schedule)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    seed: int = Field(0, description="initialisation and data order")
    progress: bool = Field(True, description="show a progress bar")


def load_examples(cfg: PRMTrainConfig) -> list[dict]:
    """The stepwise examples: from ``cfg.data`` (checked field by field) or the synthetic world."""
    if cfg.data is None:
        from oxa.prm.bench import planted_records, stepwise_records

        return stepwise_records(planted_records(cfg.synthetic_problems, seed=cfg.seed, held_out=False),
                                after_error=cfg.after_error)
    out = []
    for i, r in enumerate(read_records(cfg.data)):
        where = f"{cfg.data}: record {i + 1}"
        for name in (cfg.prompt_field, cfg.steps_field, cfg.labels_field):
            if name not in r:
                raise RecordError(f"{where}: field {name!r} is missing (fields present: {', '.join(sorted(r))})")
        steps, labels = r[cfg.steps_field], r[cfg.labels_field]
        if not isinstance(steps, list) or not isinstance(labels, list) or len(steps) != len(labels):
            raise RecordError(f"{where}: {cfg.steps_field!r} and {cfg.labels_field!r} must be lists of equal length")
        out.append({"prompt": str(r[cfg.prompt_field]), "completions": [str(s) for s in steps],
                    "labels": [bool(x) for x in labels]})
    return out


def encode_examples(examples: list[dict], tokenizer, cfg: PRMTrainConfig) -> list[dict]:
    """Token ids and per-token labels: the step's label (1 right, 0 wrong) at its mark, -100 elsewhere."""
    out = []
    for ex in examples:
        enc = encode_separator_steps(tokenizer, ex["prompt"], ex["completions"], step_token=cfg.step_token,
                                     system=cfg.system or None, template=cfg.template, max_len=cfg.max_len)
        labels = [IGNORE] * len(enc.input_ids)
        for pos, ok in zip(enc.positions, ex["labels"]):
            if pos is not None:
                labels[pos] = int(ok)
        if any(x != IGNORE for x in labels):
            out.append({"input_ids": enc.input_ids, "labels": labels})
    return out


class PadCollator:
    """Right-pads ``input_ids`` (with ``pad_id``) and ``labels`` (with -100) and builds the attention mask."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]):
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"])
            labels[i, :n] = torch.as_tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_prm(cfg: PRMTrainConfig, *, log=print) -> Path:
    """Train a separator-style PRM from ``cfg.base``; write it atomically to ``cfg.output`` and return that path."""
    import torch
    from transformers import Trainer, TrainingArguments

    from oxa.models import load_tokenizer, resolve
    from oxa.prm.tiny import build_tiny_separator_prm

    start = time.time()
    model, tokenizer = build_tiny_separator_prm(load_tokenizer(cfg.base), seed=cfg.seed, step_token=cfg.step_token,
                                                base=resolve(cfg.base))
    examples = load_examples(cfg)
    data = encode_examples(examples, tokenizer, cfg)
    steps = max(1, math.ceil(len(data) * cfg.epochs / cfg.batch_size))
    n_marks = sum(x != IGNORE for r in data for x in r["labels"])
    n_right = sum(x == 1 for r in data for x in r["labels"])
    log(f"PRM training: {len(data)} examples, {n_marks} labelled steps ({n_right} right), {steps} optimizer steps")

    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.output.name}.", dir=cfg.output.parent))
    try:
        args = TrainingArguments(
            output_dir=str(tmp / "trainer"), per_device_train_batch_size=cfg.batch_size, max_steps=steps,
            learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio,
            weight_decay=cfg.weight_decay, seed=cfg.seed, logging_steps=max(1, steps // 20), save_strategy="no",
            report_to="none", disable_tqdm=not cfg.progress, remove_unused_columns=False,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=PadCollator(tokenizer.pad_token_id))
        result = trainer.train()
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "prm_train.json", {
            "examples": len(data), "labelled_steps": n_marks, "right_steps": n_right, "optimizer_steps": steps,
            "train_loss": result.training_loss, "log_history": trainer.state.log_history,
            "seconds": time.time() - start, "config": cfg.model_dump(mode="json"),
        })
        if cfg.output.exists():
            shutil.rmtree(cfg.output)
        os.replace(tmp, cfg.output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cfg.output
