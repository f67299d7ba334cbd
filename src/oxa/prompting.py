"""How a (query, response) pair becomes token ids: one definition for scoring, training and generation.

PPL-based selection only means something if the model is trained on exactly the tokens it was scored
on, so every stage encodes through :func:`encode_example` / :func:`encode_prompt`.

Two modes:

* template (default): the query plus the paper's prompt suffix is the user turn of the chat template
  (the tokenizer's own, or ``chat_template`` in its place), followed by the assistant generation prompt;
  the response tokens follow, closed by the tokenizer's EOS (the end-of-turn token of chat models),
  which the model must learn to emit.
* no template: query and response are tokenized separately, without special tokens, and concatenated
  (the reference code's way of scoring response text). No EOS is added.

Every stage takes the same :class:`PromptFormat` (``prompt:`` in a config file, ``--prompt.*`` flags), so
a template override such as the paper's (no default system turn) reaches scoring, training, generation
and evaluation alike. Only response tokens are scored or trained on. With an empty prompt the first
response token has no context and is not scored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from oxa.config import cli

PAPER_SUFFIX = (
    "\nLet's reason step by step. Enclose the reasoning process within <think>...</think>, then summarize it "
    "and present the final answer within \\boxed{} — for example: <think>reasoning process here</think> "
    "\\boxed{answer here}."
)


class PromptFormat(BaseModel):
    """How a query becomes the model's prompt, the same in every stage."""

    model_config = ConfigDict(extra="forbid")

    template: bool = Field(True, description="put the query in the chat template; --no-prompt.template: the plain "
                                            "query + suffix, no special tokens")
    suffix: str = Field(PAPER_SUFFIX, description="text appended to every query",
                        json_schema_extra=cli(default_text="the paper's, oxa.prompting.PAPER_SUFFIX"))
    system: str | None = Field(None, description="a system message for the template (the paper uses none)")
    chat_template: str | None = Field(
        None, description="a Jinja chat template used instead of the tokenizer's own (the paper's presets remove "
                          "Qwen2.5-Math's default system turn); default: the tokenizer's")


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    n_prompt: int  # the first n_prompt ids are context; the rest are response tokens
    truncated: bool = False


def prompt_messages(query: str, fmt: PromptFormat) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": fmt.system}] if fmt.system else []
    return messages + [{"role": "user", "content": query + fmt.suffix}]


def prompt_text(tokenizer, query: str, fmt: PromptFormat) -> str:
    """The prompt as text (for backends such as vLLM that take strings)."""
    if not fmt.template:
        return query + fmt.suffix
    return tokenizer.apply_chat_template(prompt_messages(query, fmt), chat_template=fmt.chat_template, tokenize=False,
                                         add_generation_prompt=True)


def encode_prompt(tokenizer, query: str, fmt: PromptFormat) -> list[int]:
    if not fmt.template:
        text = query + fmt.suffix
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
    ids = tokenizer.apply_chat_template(prompt_messages(query, fmt), chat_template=fmt.chat_template, tokenize=True,
                                        add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def encode_response(tokenizer, response: str, fmt: PromptFormat) -> list[int]:
    ids = tokenizer(response, add_special_tokens=False)["input_ids"] if response else []
    if fmt.template and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids


def encode_example(
    tokenizer, query: str, response: str, fmt: PromptFormat, *, max_len: int | None = None
) -> Encoded:
    """Prompt ids + response ids; with ``max_len`` the response is cut so the whole fits (``truncated``)."""
    prompt = encode_prompt(tokenizer, query, fmt)
    resp = encode_response(tokenizer, response, fmt)
    ids = prompt + resp
    truncated = max_len is not None and len(ids) > max_len
    if truncated:
        ids = ids[:max_len]
    return Encoded(ids, min(len(prompt), len(ids)), truncated)


def response_mask(enc: Encoded) -> list[bool]:
    """For each position t > 0, whether token t is a scored response token (token 0 has no context)."""
    return [t >= max(enc.n_prompt, 1) for t in range(len(enc.input_ids))]
