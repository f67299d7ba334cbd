"""The synthetic world's base model: a tiny Qwen2 pre-trained from scratch on the skewed corpus.

Plain next-token training: whole documents (each closed by the end-of-turn token) are packed into rows
of ``seq_len`` tokens, never split across rows, and AdamW with a warm-up + cosine schedule runs over
them for ``epochs``. The tokenizer is trained on the same corpus (:func:`oxa.tiny.train_tokenizer`),
so nothing is downloaded.

What the defaults are fitted to (measured by sweeping shape, corpus size, packing and batch size with
:mod:`oxa.synth.diagnose`): the model learns the formats within ~1M tokens, but copying the
question's operands and then computing results arrive abruptly after ~4-6M tokens; before that,
greedy accuracy on held-out problems stays ~5-20 % whatever the shape. Rows of 128 tokens hold one
(rarely two) whole documents (a problem split across rows teaches nothing about its answer), and 48,000
documents (4.7M tokens) take a 2-layer, hidden-96 model past the transition in under 3 minutes on
2 cores: weak, but not hopeless.

The result is cached by a hash of its config (and of the world's version) under
``<cache>/synth-base/<hash>`` and written atomically, so it is built once and every later call
returns the directory, which loads with ``from_pretrained`` like any model. The default config's
model ships with oxa (:mod:`oxa.synth.shipped`): when the hash matches, it is copied into the cache
instead of pre-trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from pydantic import Field

from oxa.config import StageConfig, cli
from oxa.io import write_json
from oxa.prompting import PAPER_SUFFIX, PromptFormat, encode_example
from oxa.synth.corpus import PRETRAIN_MIX, pretrain_documents

WORLD_VERSION = 4  # bump when problems, strategies or the corpus format change: invalidates cached models


class BaseModelConfig(StageConfig):
    """What the base model is made of; every field is part of its cache key."""

    seed: int = Field(0, description="seed of the corpus and the initial weights")
    documents: int = Field(48000, description="pre-training documents")
    chat_share: float = Field(0.25, ge=0.0, le=1.0, description="share of ChatML-formatted documents (the rest is "
                                                                "plain Question/Answer text)")
    mix: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in PRETRAIN_MIX.items()},
        description="family -> strategy -> share of that family's documents (unlisted: never seen)",
        json_schema_extra=cli(default_text="oxa.synth.corpus.PRETRAIN_MIX"))
    vocab_size: int = Field(640, description="tokenizer vocabulary size")
    hidden: int = Field(96, description="hidden size")
    layers: int = Field(2, description="transformer layers")
    heads: int = Field(4, description="attention heads")
    kv_heads: int = Field(2, description="key/value heads")
    seq_len: int = Field(128, description="tokens per packed training row")
    batch_size: int = Field(16, description="rows per optimizer step")
    epochs: float = Field(1.0, gt=0, description="passes over the corpus")
    lr: float = Field(3e-3, description="peak learning rate")
    warmup: float = Field(0.05, description="share of the steps spent warming up")
    weight_decay: float = Field(0.1, description="AdamW weight decay")

    def key(self) -> str:
        return config_key(self.model_dump(), WORLD_VERSION)


def config_key(config: dict, world_version: int) -> str:
    """The cache key of a base model config (as dumped) built for a world version."""
    blob = json.dumps({"world": world_version, **config}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


QUICK_BASE = BaseModelConfig(documents=800, hidden=64, layers=2, seq_len=256, epochs=1.0)
PACK_WINDOW = 64  # open rows a document may go into (first fit among the most recent ones)


def base_model_dir(config: BaseModelConfig, cache: str | os.PathLike | None = None) -> Path:
    from oxa.models import cache_dir

    return Path(cache if cache is not None else cache_dir()) / "synth-base" / config.key()


def build_base_model(config: BaseModelConfig, *, cache: str | os.PathLike | None = None,
                     progress: bool = True, shipped: bool = True) -> Path:
    """The cached base model directory for ``config``: the shipped weights copied in when they were built
    from this config (and ``shipped``), else pre-trained first if needed."""
    from oxa.synth.shipped import shipped_model

    target = base_model_dir(config, cache)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    source = shipped_model(config) if shipped else None
    try:
        if source is not None:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:
            _pretrain(config, tmp, progress=progress)
        os.replace(tmp, target)  # atomic: an interrupted build never leaves half a model behind
    except OSError:
        if not (target / "config.json").exists():  # a concurrent build that finished first is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pretrain(config: BaseModelConfig, out: Path, *, progress: bool) -> None:
    import torch

    from oxa.tiny import build_tiny_model, save_tiny

    start = time.perf_counter()
    docs = pretrain_documents(config.documents, seed=config.seed, chat_share=config.chat_share, mix=config.mix)
    texts = [d.plain_text() for d in docs]
    tok = train_tokenizer_for(texts, config.vocab_size)
    fmt = PromptFormat()
    encoded = [encode_example(tok, doc.problem.query, doc.response, fmt).input_ids if doc.chat
               else tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
               for doc, text in zip(docs, texts)]
    packed = pack_documents(encoded, config.seq_len)
    rows = torch.tensor([r + [tok.pad_token_id] * (config.seq_len - len(r)) for r in packed])
    labels = rows.masked_fill(rows == tok.pad_token_id, -100)  # padding after the last document is not a target

    model = build_tiny_model(tok, seed=config.seed, hidden=config.hidden, layers=config.layers, heads=config.heads,
                             kv_heads=config.kv_heads, max_positions=max(2048, config.seq_len))
    model.train()
    steps = max(1, math.ceil(len(rows) * config.epochs / config.batch_size))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.95))
    warmup = max(1, int(config.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    order = _batches(len(rows), config.batch_size, steps, config.seed)
    losses = []
    with _progress(progress, steps) as advance:
        for batch in order:
            loss = model(input_ids=rows[batch], labels=labels[batch]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            advance(losses[-1])
    model.eval()
    save_tiny(model, tok, out)
    write_json(out / "oxa_synth_base.json", {
        "config": config.model_dump(), "world_version": WORLD_VERSION, "documents": len(docs),
        "tokens": sum(map(len, packed)), "padded_tokens": len(rows) * config.seq_len, "steps": steps, "params": sum(p.numel() for p in model.parameters()),
        "loss_first": losses[0], "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": round(time.perf_counter() - start, 1)})


def pack_documents(docs: list[list[int]], seq_len: int) -> list[list[int]]:
    """Whole documents into rows of at most ``seq_len`` tokens: longest first, each into the first of the
    last ``PACK_WINDOW`` rows with room for it (else a new row). A document longer than a row is cut."""
    rows: list[list[int]] = []
    for doc in sorted(docs, key=len, reverse=True):
        doc = doc[:seq_len]
        row = next((r for r in rows[-PACK_WINDOW:] if len(r) + len(doc) <= seq_len), None)
        if row is None:
            rows.append(row := [])
        row += doc
    return rows


def train_tokenizer_for(texts: list[str], vocab_size: int):
    """A tokenizer for the world: trained on the corpus plus the prompt suffix every query carries."""
    from oxa.tiny import train_tokenizer

    return train_tokenizer(texts + [PAPER_SUFFIX] * 50, vocab_size=vocab_size)


def _batches(n_rows: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of row indices: epochs of shuffled rows, the last epoch possibly partial."""
    rng, order = random.Random(seed), []
    while len(order) < steps * batch_size:
        epoch = list(range(n_rows))
        rng.shuffle(epoch)
        order += epoch
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


class _progress:
    """A rich progress bar over training steps showing the running loss (or nothing)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from oxa.commands.common import console

        self.bar = Progress(TextColumn("pre-training base model"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), console=console)
        self.bar.start()
        task = self.bar.add_task("pretrain", total=self.total, loss=float("nan"))
        return lambda loss: self.bar.update(task, advance=1, loss=loss)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
