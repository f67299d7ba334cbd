"""The base model's pre-training corpus: worked problems with a deliberately skewed mix of strategies.

OXA's premise is that correct reasoning paths the base model finds unlikely (high PPL) carry patterns
it has not captured. To make that measurable, the corpus over-represents one strategy per family,
shows a second one now and then, a third rarely (1 %) and never the rest; the teacher later uses
all of them evenly.

Most documents are plain text (``Question: ...\\nAnswer: ...``), like a base model's web data; a share
is chat-formatted exactly as :func:`oxa.prompting.encode_example` builds training examples (ChatML user
turn with the paper's suffix, assistant turn, end-of-turn), so the base model is not lost in the
template, as real base models are not. Held-out problems (see :func:`held_out`) never appear.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from oxa.synth.problems import DIFFICULTIES, FAMILIES, Problem, make_problem
from oxa.synth.teacher import solve, strategies_for

# family -> strategy -> share of that family's pre-training documents (strategies not listed: absent).
# One frequent strategy, one occasional, the rest rare or never seen.
PRETRAIN_MIX: dict[str, dict[str, float]] = {
    "chain": {"stepwise": 0.79, "labelled": 0.2, "checked": 0.01},
    "word": {"running": 0.79, "products-first": 0.2, "gains-losses": 0.01},
    "linear": {"isolate": 0.79, "undo": 0.2, "checked": 0.01},
    "modular": {"direct": 0.79, "division": 0.2, "reduce-first": 0.01},
}
HELD_OUT_SHARE = 0.15


def held_out(query: str) -> bool:
    """Whether a problem belongs to the held-out half of the world (benchmarks), by a hash of its text.

    A fixed partition of problem space, independent of any seed, keeps benchmark problems out of every
    pre-training corpus and teacher set whatever seeds built them.
    """
    return hashlib.sha1(query.encode()).digest()[0] < 256 * HELD_OUT_SHARE


def pretrain_share(family: str, strategy: str, mix: dict[str, dict[str, float]] = PRETRAIN_MIX) -> float:
    return mix.get(family, {}).get(strategy, 0.0)


def familiarity(share: float) -> str:
    """How often the base model saw a strategy: frequent (>= 50 %), occasional, rare (< 10 %) or unseen."""
    if share >= 0.5:
        return "frequent"
    if share >= 0.1:
        return "occasional"
    return "rare" if share > 0 else "unseen"


@dataclass(frozen=True)
class Document:
    problem: Problem
    strategy: str
    response: str
    chat: bool  # ChatML-formatted like a training example, else plain text

    def plain_text(self) -> str:
        return f"Question: {self.problem.query}\nAnswer: {self.response}"


def sample_problem(rng: random.Random, i: int, *, prefix: str, held: bool) -> Problem:
    """A random problem (uniform family and difficulty) from the held-out part of the world or the rest."""
    while True:
        p = make_problem(rng, rng.choice(FAMILIES), rng.choice(list(DIFFICULTIES)), f"{prefix}-{i:06d}")
        if held_out(p.query) == held:
            return p


def pretrain_documents(n: int, *, seed: int, chat_share: float,
                       mix: dict[str, dict[str, float]] = PRETRAIN_MIX) -> list[Document]:
    rng = random.Random(f"pretrain-{seed}")
    docs = []
    for i in range(n):
        p = sample_problem(rng, i, prefix="pretrain", held=False)
        names = [s for s in strategies_for(p) if pretrain_share(p.family, s, mix) > 0]
        if not names:
            continue
        strategy = rng.choices(names, weights=[mix[p.family][s] for s in names])[0]
        docs.append(Document(p, strategy, solve(p, strategy).response, chat=rng.random() < chat_share))
    return docs
