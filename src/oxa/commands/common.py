"""Options shared by several commands, and the console they report on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML file with this stage's settings; flags override it.")
]
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Skip malformed lines and records lacking fields, and count them.")
]
IdFieldOpt = Annotated[str, typer.Option("--id-field", help="Record field holding the id.")]
QueryFieldOpt = Annotated[str, typer.Option("--query-field", help="Record field holding the query.")]
ResponseFieldOpt = Annotated[str, typer.Option("--response-field", help="Record field holding the response.")]
AnswerFieldOpt = Annotated[str, typer.Option("--answer-field", help="Record field holding the gold answer.")]


def field_flags(fields_id: str, fields_query: str, fields_response: str, fields_answer: str) -> dict[str, str]:
    """The four field flags as dotted settings for :func:`oxa.config.resolve` (``fields.query`` ...).

    The command's parameters must be named ``fields_id``, ``fields_query``, ... (``resolve`` finds
    whether a flag was given by the parameter named after its setting).
    """
    return {"fields.id": fields_id, "fields.query": fields_query, "fields.response": fields_response,
            "fields.answer": fields_answer}

