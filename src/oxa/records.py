"""Field names of a record, overridable per run, and field access that fails with a clear message."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oxa.config import cli
from oxa.errors import RecordError


RESPONSE_FIELDS: tuple[str, ...] = (
    "correct", "pred", "verdict",  # oxa verify
    "status", "correct_second", "pred_second",  # oxa eval's grading
    "ppl", "n_tokens", "truncated",  # oxa score
    "finish_reason", "entropy", "sampling_entropy",  # oxa generate
    "loss_type",  # a mixed training file's CE/UL mark (TrainConfig.loss_type_field)
)
"""The fields oxa's stages write about one response. A record built from another record's query (a new
sample, a distillation query) drops them: they would describe a response it does not have."""


class Fields(BaseModel):
    """Which keys of a record hold the id, the query, the response and the gold answer.

    Defaults are ``id``, ``query``, ``response``, ``answer``; every command takes ``--fields.query``
    (alias ``--query-field``) and so on, to read other data unchanged.
    Output records keep all input fields and add their own (``correct``, ``ppl``, ...).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field("id", description="record field holding the id", json_schema_extra=cli("--id-field"))
    query: str = Field("query", description="record field holding the query", json_schema_extra=cli("--query-field"))
    response: str = Field("response", description="record field holding the response",
                          json_schema_extra=cli("--response-field"))
    answer: str = Field("answer", description="record field holding the gold answer",
                        json_schema_extra=cli("--answer-field"))


def get_field(record: dict, name: str, *, where: str, allow_none: bool = False) -> Any:
    """``record[name]``, or a :class:`RecordError` naming ``where`` (file and line), the field and the fields that exist."""
    if name not in record or (record[name] is None and not allow_none):
        have = ", ".join(sorted(map(str, record))) or "none"
        state = "is missing" if name not in record else "is null"
        raise RecordError(
            f"{where}: field {name!r} {state} (fields present: {have}); "
            "point to another field with --id-field/--query-field/--response-field/--answer-field"
        )
    return record[name]


def get_text(record: dict, name: str, *, where: str) -> str:
    """A text field; numbers are accepted and converted, anything else is an error."""
    value = get_field(record, name, where=where)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
    return value if isinstance(value, str) else str(value)


def finite_float(value: Any) -> float | None:
    """A float if ``value`` is a finite number, else None (missing, null, NaN, inf, or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def record_id(record: dict, fields: Fields, index: int) -> str:
    """The record's id, or its 0-based position in the input when the data has no id field."""
    value = record.get(fields.id)
    return str(value) if value is not None else str(index)
