"""Training data: CE and UL records, tokenised exactly as `oxa score` does, and the padding collator.

Every example goes through :func:`oxa.prompting.encode_example`, so the tokens trained on are the tokens
that were scored for PPL-based selection. Only response tokens carry a loss (completion-only). Examples
longer than ``cutoff_len`` are dropped (the reference's behaviour) or have their response truncated;
both are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from oxa.errors import RecordError
from oxa.io import ReadStats, read_records
from oxa.losses import CE, IGNORE, UL
from oxa.prompting import PromptFormat, encode_example
from oxa.records import Fields, get_text
from oxa.training.composer import Row

LOSS_TYPES = {"ce": CE, "ul": UL}


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    n_prompt: int

    @property
    def n_loss(self) -> int:
        """Tokens with a loss: the response tokens (token 0 never has context)."""
        return len(self.input_ids) - max(self.n_prompt, 1)


@dataclass
class EncodeStats:
    """What happened to each record on the way to an example."""

    kept: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_no_response: int = 0  # nothing left to train on (prompt alone fills the cutoff)
    skipped_bad: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def read_split(
    *, ce_data: Path | None, ul_data: Path | None, data: Path | None, loss_type_field: str = "loss_type",
    skip_bad: bool = False, stats: ReadStats | None = None,
) -> tuple[list[dict], list[dict]]:
    """CE and UL records from their own files and/or one file with a ``loss_type`` of "ce" or "ul" per record."""
    stats = stats if stats is not None else ReadStats()
    ce = read_records(ce_data, skip_bad=skip_bad, stats=stats) if ce_data else []
    ul = read_records(ul_data, skip_bad=skip_bad, stats=stats) if ul_data else []
    if data:
        for i, record in enumerate(read_records(data, skip_bad=skip_bad, stats=stats)):
            value = str(record.get(loss_type_field, "")).strip().lower()
            if value not in LOSS_TYPES:
                reason = (f"{data}: record {i + 1}: field {loss_type_field!r} must be 'ce' or 'ul', "
                          f"got {record.get(loss_type_field)!r}")
                if not skip_bad:
                    raise RecordError(reason)
                stats.skip(reason)
                continue
            (ce if LOSS_TYPES[value] == CE else ul).append(record)
    return ce, ul


def encode_records(
    records: list[dict], tokenizer, *, fmt: PromptFormat, fields: Fields, cutoff_len: int, policy: str,
    source: str, skip_bad: bool = False,
) -> tuple[list[Example], EncodeStats]:
    """Examples after the cutoff policy, with counts of what was cut."""
    stats = EncodeStats()
    examples = []
    for i, record in enumerate(records):
        where = f"{source}: record {i + 1}"
        try:
            query = get_text(record, fields.query, where=where)
            response = get_text(record, fields.response, where=where)
        except RecordError:
            if not skip_bad:
                raise
            stats.skipped_bad += 1
            continue
        enc = encode_example(tokenizer, query, response, fmt, max_len=cutoff_len if policy == "truncate" else None)
        if len(enc.input_ids) > cutoff_len:
            stats.dropped_too_long += 1
            continue
        example = Example(enc.input_ids, enc.n_prompt)
        if example.n_loss < 1:
            stats.dropped_no_response += 1
            continue
        stats.truncated += enc.truncated
        stats.kept += 1
        examples.append(example)
    return examples, stats


class ComposedDataset(Dataset):
    """Looks up a composer :class:`Row` in the CE or UL examples."""

    def __init__(self, ce: list[Example], ul: list[Example]):
        self.ce, self.ul = ce, ul

    def __len__(self) -> int:
        return len(self.ce) + len(self.ul)

    def __getitem__(self, row: Row) -> tuple[Example, Row]:
        return (self.ce if row.kind == CE else self.ul)[row.index], row


@dataclass
class Collator:
    """Right-pads a micro-batch; ``loss_kinds[b, t]`` is the loss of token t (CE, UL or IGNORE)."""

    pad_token_id: int

    def __call__(self, items: list[tuple[Example, Row]]) -> dict[str, torch.Tensor]:
        width = max(len(ex.input_ids) for ex, _ in items)
        b = len(items)
        input_ids = torch.full((b, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((b, width), dtype=torch.long)
        kinds = torch.full((b, width), IGNORE, dtype=torch.long)
        norm = torch.zeros(b, dtype=torch.float32)
        for i, (ex, row) in enumerate(items):
            n = len(ex.input_ids)
            input_ids[i, :n] = torch.tensor(ex.input_ids)
            attention[i, :n] = 1
            if not row.filler:
                kinds[i, max(ex.n_prompt, 1):n] = row.kind
                norm[i] = row.norm
        return {"input_ids": input_ids, "attention_mask": attention, "loss_kinds": kinds, "row_norm": norm}
