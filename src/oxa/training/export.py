"""Export the CE and UL training sets for other trainers: LLaMA-Factory alpaca JSON and TRL prompt/completion.

Both keep a ``loss_type`` ("ce" or "ul") per example, which is what the authors' patched LLaMA-Factory
reads; plain TRL / LLaMA-Factory ignore the field and would train on every example with CE, so keep the
UL examples out of trainers that do not know it. The prompt is the query plus the prompt suffix, as in
training and scoring here; the chat template is applied by the receiving trainer.
"""

from __future__ import annotations

from pathlib import Path

from oxa.io import write_json, write_records
from oxa.prompting import PromptFormat, prompt_messages
from oxa.records import Fields, get_text

FORMATS = ("llamafactory", "trl")


def _pairs(ce: list[dict], ul: list[dict], fields: Fields, fmt: PromptFormat, source: str):
    for loss_type, records in (("ce", ce), ("ul", ul)):
        for i, record in enumerate(records):
            where = f"{source} ({loss_type}) record {i + 1}"
            messages = prompt_messages(get_text(record, fields.query, where=where), fmt)
            yield loss_type, messages, get_text(record, fields.response, where=where)


def export_llamafactory(ce: list[dict], ul: list[dict], path: str | Path, *, fields: Fields = Fields(),
                        fmt: PromptFormat = PromptFormat(), source: str = "training data") -> int:
    """An alpaca-format JSON array (instruction, input, output, system, loss_type); returns the count."""
    rows = [{"instruction": m[-1]["content"], "input": "", "output": r, **({"system": fmt.system} if fmt.system else {}),
             "loss_type": t} for t, m, r in _pairs(ce, ul, fields, fmt, source)]
    write_json(path, rows)
    return len(rows)


def export_trl(ce: list[dict], ul: list[dict], path: str | Path, *, fields: Fields = Fields(),
               fmt: PromptFormat = PromptFormat(), source: str = "training data") -> int:
    """Conversational prompt/completion JSONL (TRL's SFTTrainer format) with ``loss_type``; returns the count."""
    rows = ({"prompt": m, "completion": [{"role": "assistant", "content": r}], "loss_type": t}
            for t, m, r in _pairs(ce, ul, fields, fmt, source))
    return write_records(path, rows)


def export(kind: str, ce: list[dict], ul: list[dict], path: str | Path, **kwargs) -> int:
    if kind not in FORMATS:
        raise ValueError(f"unknown export format {kind!r}; choose one of {', '.join(FORMATS)}")
    return (export_llamafactory if kind == "llamafactory" else export_trl)(ce, ul, path, **kwargs)
