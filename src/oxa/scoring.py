"""Perplexity of each response under a model: the signal OXA selects training data by.

For a response of T scored tokens s_1..s_T after a context c,

    NLL_t = -log p(s_t | c, s_<t) = logsumexp(z_t) - z_t[s_t]        (z_t: the logits at step t)
    PPL   = exp( (1/T) * sum_t NLL_t )

Tokenization is :func:`oxa.prompting.encode_example`, the same one training uses, so a response is
trained on exactly the tokens it was scored on. Template mode (default) scores the response and its
closing EOS after the chat-templated prompt; ``template=False`` scores the raw response tokens after
the raw query tokens (the first token of a context-free response is not scored).

These choices make it fast and memory-safe at a 152k vocabulary:

* records are sorted by length inside windows of ``sort_window`` records and packed into batches of at
  most ``token_budget`` padded tokens and at most 10% padding, so batches hold sequences of similar
  length; right padding needs no padding mask, so attention runs the fused causal kernel;
* the model body runs once per batch, then only the hidden states of scored positions go through the
  output head, a chunk of positions at a time, so the full ``batch x length x vocab`` logits never exist;
* logits are upcast to fp32 for the log-softmax and per-sequence sums are taken in fp64, whatever the
  model's dtype (the reference rounded its mean NLL to bf16: PPL steps of ~0.023 near 3.0).

Edge cases: an empty response has no PPL (``ppl`` NaN, written as null; ``n_tokens`` 0) in both modes -
in template mode its lone EOS is not scored, because how likely the model is to stop at once says
nothing about its confidence in a solution, and a finite value would let selection pick empty
responses. With ``max_len`` a longer example is cut to fit, flagged ``truncated`` and scored on the
response tokens that fit (none, if the prompt alone fills it: PPL NaN).

Windows, not single records, are the unit of work and of distributed sharding: a window is always cut
into the same batches, so results are the same bit for bit whether a run is resumed or split over
ranks (on the same hardware and thread count).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field, PositiveInt

from oxa.config import StageConfig, cli
from oxa.distributed import all_sum, default_device, dist_info, finish_parts, open_part, shard, shutdown
from oxa.errors import OxaError, RecordError
from oxa.io import ReadStats, read_records
from oxa.prompting import Encoded, PromptFormat, encode_example, response_mask
from oxa.records import Fields, finite_float, get_text

LOGIT_CHUNK_BYTES = 256 * 2**20  # fp32 logits of one head chunk: 256 MiB (~440 positions at a 152k vocab)
PADDING_CAP = 0.1  # most of a batch's tokens that may be padding (see pack_batches)
SORT_WINDOW = 256  # records sorted together: ~98% of the padding saving of a global sort on long-tailed lengths


@dataclass(frozen=True)
class Score:
    ppl: float  # NaN when no token was scored
    n_tokens: int  # response tokens scored
    truncated: bool

    def as_fields(self) -> dict:
        return {"ppl": self.ppl, "n_tokens": self.n_tokens, "truncated": self.truncated}


def pack_batches(lengths: list[int], token_budget: int, max_padding: float = PADDING_CAP) -> list[list[int]]:
    """Positions of ``lengths`` grouped longest first into batches of at most ``token_budget`` padded tokens.

    A batch padded to its longest sequence L holds at most ``max(1, token_budget // L)`` sequences, and
    closes early where the next one would make more than ``max_padding`` of its tokens padding (on
    long-tailed lengths a cap of 0.1 takes the padding of 256-record windows from ~12% to ~8% for ~30%
    more batches, each still thousands of tokens). Longest first puts the largest batch at the start, so
    a budget too big for the device fails at once, not hours in.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    while order:
        longest = max(lengths[order[0]], 1)
        size, real = 1, lengths[order[0]]
        while size < min(len(order), token_budget // longest):
            if (size + 1) * longest - (real + lengths[order[size]]) > max_padding * (size + 1) * longest:
                break
            real += lengths[order[size]]
            size += 1
        batches.append(order[:size])
        order = order[size:]
    return batches


def logits_head(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden states -> logits, as the model's own forward computes them after its body.

    The output projection plus the final transforms some architectures apply (Gemma's soft-capping,
    Granite's and Cohere's scaling). :func:`check_head` verifies the result against the full forward.
    """
    lm_head = model.get_output_embeddings()
    cfg = model.config.get_text_config()
    cap = getattr(cfg, "final_logit_softcapping", None)
    divide = getattr(cfg, "logits_scaling", None)
    multiply = getattr(cfg, "logit_scale", None)

    def head(h: torch.Tensor) -> torch.Tensor:
        z = lm_head(h)
        if divide is not None:
            z = z / divide
        if multiply is not None:
            z = z * multiply
        if cap is not None:
            z = torch.tanh(z / cap) * cap
        return z

    return head


@torch.inference_mode()
def check_head(model, head: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Refuse a model whose forward computes logits in a way :func:`logits_head` does not reproduce."""
    device = next(model.parameters()).device
    ids = torch.arange(8, device=device).unsqueeze(0) % model.config.get_text_config().vocab_size
    want = model(input_ids=ids).logits.float()
    got = head(model.get_decoder()(input_ids=ids).last_hidden_state).float()
    tol = 1e-3 if want.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32 else 5e-2
    if want.shape != got.shape or not torch.allclose(want, got, rtol=tol, atol=tol):
        raise OxaError(
            f"{type(model).__name__}: its logits are not the output head applied to its last hidden state, "
            "which chunked scoring relies on; this architecture is not supported by `oxa score`"
        )


class Scorer:
    """A model ready to score encoded examples: batches them and returns one :class:`Score` each."""

    def __init__(self, model, *, token_budget: int = 16384, pad_id: int = 0):
        self.model = model
        self.body = model.get_decoder()
        self.head = logits_head(model)
        check_head(model, self.head)
        self.device = next(model.parameters()).device
        self.token_budget = token_budget
        self.pad_id = pad_id
        self.logit_chunk = max(1, LOGIT_CHUNK_BYTES // (4 * model.config.get_text_config().vocab_size))

    def plan(self, encoded: list[Encoded]) -> list[list[int]]:
        return pack_batches([len(e.input_ids) for e in encoded], self.token_budget)

    @torch.inference_mode()
    def score_batch(self, batch: list[Encoded]) -> list[Score]:
        """One forward pass of the body over the right-padded batch; the head only at scored positions."""
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        scored = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, e in enumerate(batch):
            ids[row, : len(e.input_ids)] = torch.as_tensor(e.input_ids)
            scored[row, : len(e.input_ids)] = torch.as_tensor(response_mask(e))
        ids, scored = ids.to(self.device), scored.to(self.device)

        # Right padding: a real token attends only to earlier tokens, all real, so the causal mask alone is
        # exact for every position read below; without a padding mask attention takes the fused causal
        # kernel instead of materialising a length x length mask (on CPU ~25% of the whole pass).
        hidden = self.body(input_ids=ids).last_hidden_state
        # the hidden state at t predicts token t+1: keep the positions whose next token is scored
        predicts = scored[:, 1:]
        h = hidden[:, :-1][predicts]
        targets = ids[:, 1:][predicts]
        rows = torch.arange(len(batch), device=self.device).unsqueeze(1).expand_as(predicts)[predicts]
        nll = torch.empty(len(targets), dtype=torch.float32, device=self.device)
        for s in range(0, len(targets), self.logit_chunk):
            z = self.head(h[s : s + self.logit_chunk]).float()
            y = targets[s : s + self.logit_chunk]
            nll[s : s + self.logit_chunk] = torch.nn.functional.cross_entropy(z, y, reduction="none")
        sums = torch.zeros(len(batch), dtype=torch.float64, device=self.device).index_add_(0, rows, nll.double())
        counts = torch.bincount(rows, minlength=len(batch))
        return [
            Score(math.exp(s / n) if n else math.nan, n, e.truncated)
            for s, n, e in zip(sums.tolist(), counts.tolist(), batch)
        ]


def encode_record(record: dict, tokenizer, fields: Fields, fmt: PromptFormat, max_len: int | None, where: str) -> Encoded | None:
    """The example's tokens, or None for an empty response (not scored: see the module docstring)."""
    query = get_text(record, fields.query, where=where)
    response = get_text(record, fields.response, where=where)
    if response == "":
        return None
    return encode_example(tokenizer, query, response, fmt, max_len=max_len)


def iter_window_scores(
    window: list[tuple[int, dict]],
    scorer: Scorer,
    tokenizer,
    *,
    fields: Fields,
    fmt: PromptFormat,
    max_len: int | None,
    source: str,
    skip: Callable[[int], bool] = lambda i: False,
) -> Iterator[list[tuple[int, Score]]]:
    """Scores of one window of ``(index, record)`` pairs, a batch at a time.

    The batches depend only on the window, never on ``skip``: a batch with any item not yet done is
    scored whole (so values match an uninterrupted run exactly), and only its not-done items yielded.
    """
    encoded: list[Encoded] = []
    owners: list[int] = []
    empty: list[int] = []
    for i, record in window:
        enc = encode_record(record, tokenizer, fields, fmt, max_len, f"{source}: record {i + 1}")
        if enc is None:
            empty.append(i)
        else:
            encoded.append(enc)
            owners.append(i)
    if todo := [(i, Score(math.nan, 0, False)) for i in empty if not skip(i)]:
        yield todo
    for batch in scorer.plan(encoded):
        if all(skip(owners[b]) for b in batch):
            continue
        scores = scorer.score_batch([encoded[b] for b in batch])
        yield [(owners[b], s) for b, s in zip(batch, scores) if not skip(owners[b])]


def windows(indices: list[int], size: int) -> list[list[int]]:
    return [indices[s : s + size] for s in range(0, len(indices), size)]


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="rec", desc="scoring", disable=not enabled, dynamic_ncols=True, smoothing=0.1)


def score_records(
    records: list[dict],
    model,
    tokenizer,
    *,
    fields: Fields = Fields(),
    fmt: PromptFormat = PromptFormat(),
    max_len: int | None = None,
    token_budget: int = 16384,
    sort_window: int = SORT_WINDOW,
    progress: bool = True,
    source: str = "records",
) -> list[dict]:
    """``records`` in input order, each a copy with ``ppl``, ``n_tokens`` and ``truncated`` added.

    A record without a text query or response raises :class:`RecordError` naming ``source`` and the
    1-based record number.
    """
    scorer = Scorer(model, token_budget=token_budget, pad_id=_pad_id(tokenizer))
    scores: dict[int, Score] = {}
    with _progress(len(records), progress) as bar:
        for window in windows(list(range(len(records))), sort_window):
            for batch in iter_window_scores(
                [(i, records[i]) for i in window], scorer, tokenizer,
                fields=fields, fmt=fmt, max_len=max_len, source=source,
            ):
                scores.update(batch)
                bar.update(len(batch))
    return [{**record, **scores[i].as_fields()} for i, record in enumerate(records)]


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


class ScoreConfig(StageConfig):
    """Settings of ``oxa score`` (YAML keys; the CLI flags set the same names)."""

    input: Path = Field(description="records to score: JSONL, JSON array or Parquet",
                        json_schema_extra=cli(positional=True))
    output: Path = Field(description="output file (.jsonl or .parquet)", json_schema_extra=cli("-o"))
    model: str = Field(description="model directory, hub id, .gguf file or alias", json_schema_extra=cli("-m"))
    fields: Fields = Fields()
    prompt: PromptFormat = PromptFormat()
    max_len: PositiveInt | None = Field(None, description="context cap in tokens; longer examples are cut and flagged")
    token_budget: PositiveInt = Field(16384, description="padded tokens per batch")
    sort_window: PositiveInt = Field(SORT_WINDOW, description="records sorted by length together (and the unit of "
                                                              "sharding)")
    dtype: str = Field("float32", description="model weights: float32, bfloat16, float16 or auto")
    device: str = Field("auto", description="where the model runs: cpu, cuda, cuda:1 ...; auto: this rank's GPU if "
                                            "any, else the CPU")
    skip_bad: bool = Field(False, description="skip malformed lines and records lacking a text query or response, "
                                              "and count them")
    progress: bool = Field(True, description="show a progress bar")


@dataclass
class ScoreSummary:
    output: Path
    records: int  # records in the output
    scored: int  # of those, scored by this run (the rest were resumed from an earlier one)
    nan: int  # records with no scored token (empty response, or the prompt fills max_len)
    truncated: int
    skipped: int  # bad input lines/records skipped with skip_bad
    seconds: float  # scoring, after the model is loaded (the rate's denominator)
    load_seconds: float  # reading the input and loading the model
    world_size: int

    def line(self) -> str:
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        resumed = self.records - self.scored
        return (
            f"scored {self.scored} records in {self.seconds:.1f} s ({rate:.1f} rec/s"
            + f", {self.load_seconds:.1f} s loading"
            + (f", {self.world_size} processes" if self.world_size > 1 else "")
            + ")"
            + (f", {resumed} resumed from an earlier run" if resumed else "")
            + f"; {self.nan} without PPL (empty response or prompt fills --max-len), {self.truncated} truncated"
            + (f", {self.skipped} bad input records skipped" if self.skipped else "")
            + f" -> {self.output}"
        )


def score_file(config: ScoreConfig) -> ScoreSummary | None:
    """Run ``oxa score``: read, score this rank's share of windows resumably, merge on rank 0.

    Returns the summary on rank 0 and None on other ranks. Interrupted runs resume when re-run with the
    same settings: finished records are neither rescored nor duplicated.
    """
    from oxa.models import load_model, load_tokenizer

    start = time.perf_counter()
    rank, world = dist_info()
    stats = ReadStats()
    records = read_records(config.input, skip_bad=config.skip_bad, stats=stats)
    all_windows = windows(_valid_indices(records, config, stats), config.sort_window)
    mine = [all_windows[k] for k in shard(len(all_windows), rank, world)]
    owned = {i for window in mine for i in window}

    writer = open_part(config.output, _run_identity(config), keep=owned.__contains__)
    try:
        pending = [window for window in mine if any(i not in writer.done for i in window)]
        n_pending = sum(i not in writer.done for window in pending for i in window)
        scored = 0
        loaded = time.perf_counter()
        if pending:
            tokenizer = load_tokenizer(config.model)
            device = default_device() if config.device == "auto" else config.device
            model = load_model(config.model, dtype=config.dtype, device=device)
            scorer = Scorer(model, token_budget=config.token_budget, pad_id=_pad_id(tokenizer))
            loaded = time.perf_counter()
            with _progress(n_pending, config.progress and rank == 0) as bar:
                for window in pending:
                    for batch in iter_window_scores(
                        [(i, records[i]) for i in window], scorer, tokenizer,
                        fields=config.fields, fmt=config.prompt, max_len=config.max_len,
                        source=str(config.input), skip=writer.done.__contains__,
                    ):
                        writer.add((i, {**records[i], **s.as_fields()}) for i, s in batch)
                        scored += len(batch)
                        bar.update(len(batch))
        scored = all_sum(scored)
        merged = finish_parts(writer, sum(map(len, all_windows)))
    finally:
        writer.close()
        shutdown()
    if merged is None:
        return None
    return ScoreSummary(
        output=config.output,
        records=len(merged),
        scored=scored,
        nan=sum(finite_float(r["ppl"]) is None for r in merged),  # NaN from this run, null from a resumed one
        truncated=sum(bool(r["truncated"]) for r in merged),
        skipped=stats.skipped,
        seconds=time.perf_counter() - loaded,
        load_seconds=loaded - start,
        world_size=world,
    )


def _valid_indices(records: list[dict], config: ScoreConfig, stats: ReadStats) -> list[int]:
    """Indices of records with a text query and response; others raise, or are skipped with skip_bad."""
    valid = []
    for i, record in enumerate(records):
        where = f"{config.input}: record {i + 1}"
        try:
            get_text(record, config.fields.query, where=where)
            get_text(record, config.fields.response, where=where)
        except RecordError as e:
            if not config.skip_bad:
                raise
            stats.skip(str(e))
            continue
        valid.append(i)
    if not valid:
        raise OxaError(f"{config.input}: no records to score")
    return valid


def _run_identity(config: ScoreConfig) -> dict:
    """What the scores depend on: partial results made with anything else must not be mixed in."""
    st = os.stat(config.input)
    return {
        "stage": "score",
        "input": str(Path(config.input).resolve()),
        "input_size": st.st_size,
        "input_mtime_ns": st.st_mtime_ns,
        "model": config.model,
        "dtype": config.dtype,
        "fields": config.fields.model_dump(),
        "prompt": config.prompt.model_dump(),
        "max_len": config.max_len,
        "skip_bad": config.skip_bad,
    }
