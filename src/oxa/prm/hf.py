"""Transformers PRMs scored at step marks: the Qwen2.5-Math-PRM style and the Math-Shepherd style.

Both build one text per (question, steps), put a mark after every step, and read a 2-way decision at
the token that ends each mark:

* **Separator style** (Qwen2.5-Math-PRM, TRL-trained token classifiers): the chat template renders a
  system turn ("Please reason step by step, and put your final answer within \\boxed{}."), the question
  as the user turn and ``"<extra_0>".join(steps) + "<extra_0>"`` as the assistant turn. The model has a
  2-output head (a token-classification model, or Qwen's own ``AutoModel`` code): ``logits [B, T, 2]``,
  and a step's score is ``softmax(logits[t])[1]`` at its ``<extra_0>``. With ``template=False`` the
  text is the question directly followed by the marked steps (TRL's PRM trainer layout).
* **Tag style** (Math-Shepherd): a causal LM reads ``question + " " + "\\n".join(step + " ки")``; a
  step's score is ``P("+") = softmax(z_+, z_-)`` over the LM logits of the tokens "+" and "-" at its tag.

Where a mark lands is found from character offsets (the last token starting before the mark's end),
not by searching token ids, so a mark string that happens to occur inside a step cannot shift the
scores. Sequences are right-padded and packed into batches of at most ``token_budget`` padded tokens
(:func:`oxa.scoring.pack_batches`); the tag style runs the LM head only at tag positions. Scores are
computed in fp32 whatever the model's dtype. With ``max_len`` a longer text is cut and steps whose
mark falls beyond the cut get no score (None).
"""

from __future__ import annotations

import bisect
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from oxa.errors import OxaError
from oxa.prm.base import PRM, StepInput
from oxa.prm.steps import StepSplit
from oxa.scoring import check_head, logits_head, pack_batches

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TOKEN = "<extra_0>"
STEP_TAG = " ки"
SEPARATOR_SPLIT = StepSplit(separator="\n\n")
TAG_SPLIT = StepSplit(separator="\n")


@dataclass(frozen=True)
class EncodedSteps:
    input_ids: list[int]
    positions: list[int | None]  # per step, the token where its score is read; None when cut off by max_len


def _require_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise OxaError(f"{type(tokenizer).__name__}: a PRM needs a fast (Rust) tokenizer to map steps to tokens")


def _encode_marked(tokenizer, text: str, mark_ends: list[int], max_len: int | None) -> EncodedSteps:
    """Token ids of ``text`` and, for each mark ending at character ``mark_ends[i]``, its last token: the
    last one that starts before that character offset (a character may be several byte-level tokens)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in enc["offset_mapping"]]
    positions = [bisect.bisect_left(starts, end) - 1 for end in mark_ends]
    ids = enc["input_ids"]
    if max_len is not None and len(ids) > max_len:
        ids = ids[:max_len]
        positions = [p if p is not None and p < max_len else None for p in positions]
    return EncodedSteps(list(ids), positions)


def encode_separator_steps(tokenizer, query: str, steps: Sequence[str], *, step_token: str = STEP_TOKEN,
                           system: str | None = QWEN_PRM_SYSTEM, template: bool = True,
                           max_len: int | None = None) -> EncodedSteps:
    """The separator-style text of ``query`` and ``steps`` as tokens, and where each step's score is read.

    Scoring and PRM training both encode through this function, so a trained PRM is scored on exactly
    the layout it learned.
    """
    _require_fast(tokenizer)
    content = "".join(step + step_token for step in steps)
    if template:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": query}, {"role": "assistant", "content": content}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        base = text.rfind(content)
        if base < 0:
            raise OxaError(f"{type(tokenizer).__name__}: its chat template changes the assistant turn's text, "
                           "so step marks cannot be located; use template=False")
    else:
        text, base = query + content, len(query)
    ends, pos = [], base
    for step in steps:
        pos += len(step) + len(step_token)
        ends.append(pos)
    return _encode_marked(tokenizer, text, ends, max_len)


def encode_tagged_steps(tokenizer, query: str, steps: Sequence[str], *, step_tag: str = STEP_TAG,
                        max_len: int | None = None) -> EncodedSteps:
    """The Math-Shepherd text ``query + " " + "\\n".join(step + tag)`` as tokens, and each tag's position."""
    _require_fast(tokenizer)
    text, ends = query + " ", []
    for i, step in enumerate(steps):
        text += ("\n" if i else "") + step + step_tag
        ends.append(len(text))
    return _encode_marked(tokenizer, text, ends, max_len)


class TransformersPRM(PRM):
    """Shared batching: encode every item, pack by length, one forward per batch, scores at the marks."""

    def __init__(self, model, tokenizer, *, split: StepSplit, max_len: int | None = None, token_budget: int = 16384):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.split = split
        self.max_len = max_len
        self.token_budget = token_budget
        self.device = next(model.parameters()).device
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    @abstractmethod
    def encode(self, query: str, steps: Sequence[str]) -> EncodedSteps:
        """The tokens of one (question, steps) text and where each step's score is read."""

    @abstractmethod
    def step_probs(self, ids: torch.Tensor, attention: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """P(step right) at token ``(rows[i], cols[i])`` of the padded batch ``ids``."""

    @torch.inference_mode()
    def score(self, items: Sequence[StepInput]) -> list[list[float | None]]:
        encoded = [self.encode(item.query, item.steps.texts) for item in items]
        out: list[list[float | None]] = [[None] * len(e.positions) for e in encoded]
        todo = [i for i, e in enumerate(encoded) if any(p is not None for p in e.positions)]
        for batch in pack_batches([len(encoded[i].input_ids) for i in todo], self.token_budget):
            members = [todo[b] for b in batch]
            width = max(len(encoded[i].input_ids) for i in members)
            ids = torch.full((len(members), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(members), width), dtype=torch.long)
            rows, cols, owners = [], [], []
            for r, i in enumerate(members):
                e = encoded[i]
                ids[r, : len(e.input_ids)] = torch.as_tensor(e.input_ids)
                attention[r, : len(e.input_ids)] = 1
                for k, p in enumerate(e.positions):
                    if p is not None:
                        rows.append(r)
                        cols.append(p)
                        owners.append((i, k))
            probs = self.step_probs(ids.to(self.device), attention.to(self.device),
                                    torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device))
            for (i, k), p in zip(owners, probs.tolist()):
                out[i][k] = p
        return out


class SeparatorPRM(TransformersPRM):
    """Qwen2.5-Math-PRM style: class-1 probability of a 2-output head at each ``<extra_0>``."""

    name = "separator"

    def __init__(self, model, tokenizer, *, step_token: str = STEP_TOKEN, system: str | None = QWEN_PRM_SYSTEM,
                 template: bool = True, split: StepSplit = SEPARATOR_SPLIT, max_len: int | None = None,
                 token_budget: int = 16384):
        super().__init__(model, tokenizer, split=split, max_len=max_len, token_budget=token_budget)
        self.step_token, self.system, self.template = step_token, system, template

    def encode(self, query: str, steps: Sequence[str]) -> EncodedSteps:
        return encode_separator_steps(self.tokenizer, query, steps, step_token=self.step_token, system=self.system,
                                      template=self.template, max_len=self.max_len)

    def step_probs(self, ids, attention, rows, cols):
        out = self.model(input_ids=ids, attention_mask=attention)
        logits = out.logits if hasattr(out, "logits") else out[0]
        if logits.shape[-1] != 2:
            raise OxaError(f"a separator-style PRM needs a head with 2 outputs; this one has {logits.shape[-1]}")
        return torch.softmax(logits[rows, cols].float(), dim=-1)[:, 1]


class StepTagPRM(TransformersPRM):
    """Math-Shepherd style: P(good) between the good and bad tokens' LM logits at each step tag."""

    name = "tag"

    def __init__(self, model, tokenizer, *, step_tag: str = STEP_TAG, good_token: str = "+", bad_token: str = "-",
                 split: StepSplit = TAG_SPLIT, max_len: int | None = None, token_budget: int = 16384):
        super().__init__(model, tokenizer, split=split, max_len=max_len, token_budget=token_budget)
        self.step_tag = step_tag
        self.candidates = [single_token(tokenizer, good_token), single_token(tokenizer, bad_token)]
        self.body = model.get_decoder()
        self.head = logits_head(model)
        check_head(model, self.head)

    def encode(self, query: str, steps: Sequence[str]) -> EncodedSteps:
        return encode_tagged_steps(self.tokenizer, query, steps, step_tag=self.step_tag, max_len=self.max_len)

    def step_probs(self, ids, attention, rows, cols):
        hidden = self.body(input_ids=ids, attention_mask=attention).last_hidden_state
        z = self.head(hidden[rows, cols]).float()[:, self.candidates]
        return torch.softmax(z, dim=-1)[:, 0]


def single_token(tokenizer, text: str) -> int:
    """The id of ``text`` as one token (as the tokenizer encodes it mid-text); an error if it is several."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise OxaError(f"{text!r} is {len(ids)} tokens for this tokenizer; a step-tag PRM needs a single-token "
                       "good/bad label")
    return ids[0]
