"""Correcting a failed response at its first wrong step: the piece of SCOPE's salvage that needs no trainer.

For a failed response a PRM locates the first wrong step (:func:`locate_errors`); the prefix before it
is kept, and a :class:`Corrector` writes that step again. :func:`apply_corrections` returns a
:class:`Salvage` per response: the text the policy continues from (prefix + corrected step + separator)
and the character span of the corrected step, whose tokens are off-policy.

Correctors:

* :class:`TeacherCorrector`: the synthetic world's teacher writes the next line of a correct solution
  consistent with the prefix (exact; needs synthetic-world records);
* :class:`ModelCorrector`: any model through a generation backend, prompted with the problem, the
  verified steps, the wrong step and, where the data has one, a reference solution
  (:data:`CORRECTOR_PROMPT`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from oxa.config import StageConfig
from oxa.prm.base import DEFAULT_THRESHOLD, PRM, StepInput, judge
from oxa.prm.steps import THINK_CLOSE, Steps


@dataclass(frozen=True)
class CorrectionRequest:
    """A failed response, cut before its first wrong step ``error``."""

    query: str
    steps: Steps
    error: int  # index of the first wrong step; len(steps) when none is wrong but the outcome is
    record: Mapping[str, Any] = field(default_factory=dict)
    reference: str | None = None  # a reference solution, where the data has one

    @property
    def prefix(self) -> str:
        """The response before the wrong step (kept as it was)."""
        return self.steps.prefix(self.error)

    @property
    def verified(self) -> list[str]:
        """The steps before the wrong one."""
        return self.steps.texts[: self.error]

    @property
    def wrong_step(self) -> str:
        return self.steps[self.error].text if self.error < len(self.steps) else ""

    @property
    def at_answer(self) -> bool:
        """The wrong step is the answer after ``</think>``."""
        return self.error < len(self.steps) and self.steps[self.error].answer

    @property
    def relative_position(self) -> float:
        """The share of the steps kept before the wrong one (0: the first step is wrong)."""
        return self.error / max(len(self.steps), 1)


class Corrector(ABC):
    """Writes the first wrong step of each request again; None where it cannot."""

    @abstractmethod
    def correct(self, requests: Sequence[CorrectionRequest]) -> list[str | None]: ...


@dataclass(frozen=True)
class Salvage:
    request: CorrectionRequest
    correction: str
    separator: str  # what follows the corrected step before the policy continues

    @property
    def done(self) -> bool:
        """The corrected step is the answer: nothing is left for the policy to write."""
        return self.request.at_answer or THINK_CLOSE in self.correction

    @property
    def resume_text(self) -> str:
        """The response so far: the kept prefix, the corrected step, and the separator unless it is ``done``."""
        return self.request.prefix + self.correction + ("" if self.done else self.separator)

    @property
    def off_policy_span(self) -> tuple[int, int]:
        """Character span of the corrected step in :attr:`resume_text` (its tokens are off-policy)."""
        start = len(self.request.prefix)
        return start, start + len(self.correction)


def encode_salvage(tokenizer, salvage: Salvage) -> tuple[list[int], list[bool]]:
    """Token ids of ``salvage.resume_text`` and, per token, whether it is off-policy (the corrected step).

    The kept prefix, the correction and the separator are tokenized apart and concatenated, so no token
    straddles the corrected step's boundaries and the off-policy mask is exact (as LUFFY tokenizes its
    off-policy prefix apart from the policy's continuation).
    """
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    prefix, correction = ids(salvage.request.prefix), ids(salvage.correction)
    tail = ids(salvage.resume_text[len(salvage.request.prefix) + len(salvage.correction):])
    return prefix + correction + tail, [False] * len(prefix) + [True] * len(correction) + [False] * len(tail)


def prm_verifier_agreement(first_errors: Sequence[int | None], correct: Sequence[bool]) -> dict[str, float]:
    """How a PRM's verdicts compare with the verifier's on the same rollouts (for the RL log).

    ``missed_failures``: the share of failed rollouts in which the PRM finds no wrong step (they cannot
    be salvaged); ``flagged_successes``: the share of correct rollouts in which it flags one.
    """
    failed = [e for e, ok in zip(first_errors, correct, strict=True) if not ok]
    passed = [e for e, ok in zip(first_errors, correct, strict=True) if ok]
    out = {}
    if failed:
        out["missed_failures"] = sum(e is None for e in failed) / len(failed)
    if passed:
        out["flagged_successes"] = sum(e is not None for e in passed) / len(passed)
    return out


def locate_errors(prm: PRM, items: Sequence[StepInput], *, threshold: float = DEFAULT_THRESHOLD,
                  reference_field: str | None = None) -> list[CorrectionRequest | None]:
    """A correction request at each item's first error; None where the PRM finds no wrong step."""
    out: list[CorrectionRequest | None] = []
    for item, j in zip(items, judge(prm, items, threshold)):
        if j.first_error is None:
            out.append(None)
            continue
        ref = item.record.get(reference_field) if reference_field else None
        out.append(CorrectionRequest(item.query, item.steps, j.first_error, item.record,
                                     str(ref) if ref is not None else None))
    return out


def apply_corrections(corrector: Corrector, requests: Sequence[CorrectionRequest | None],
                      separator: str) -> list[Salvage | None]:
    """Correct every request (None stays None, as does a request the corrector cannot correct)."""
    todo = [r for r in requests if r is not None]
    corrections = iter(corrector.correct(todo))
    out: list[Salvage | None] = []
    for r in requests:
        c = next(corrections) if r is not None else None
        out.append(Salvage(r, c, separator) if r is not None and c else None)
    return out


# ------------------------------------------------------------------------------------------ teacher
class TeacherCorrector(Corrector):
    """The synthetic world's teacher: the next line of a correct solution consistent with the verified lines.

    At the answer step it writes the answer line. When the verified lines already make a whole
    solution (the wrong step was one line too many), the correction closes the reasoning and answers.
    """

    def correct(self, requests: Sequence[CorrectionRequest]) -> list[str | None]:
        from oxa.prm.checker import problem_of
        from oxa.synth.prefix import consistent_solutions, next_line
        from oxa.synth.teacher import answer_line

        out: list[str | None] = []
        for n, r in enumerate(requests):
            problem = problem_of(r.record, f"request {n + 1}")
            if r.at_answer:
                out.append(answer_line(problem.answer))
                continue
            lines = [s.text for s in r.steps.steps[: r.error] if not s.answer]
            line = next_line(problem, lines)
            if line is None and consistent_solutions(problem, lines):
                line = THINK_CLOSE + "\n" + answer_line(problem.answer)
            out.append(line)
        return out


# ------------------------------------------------------------------------------------------ any model
CORRECTOR_PROMPT = """Problem:
{query}
{reference}
A partial solution; each of its steps has been checked and is correct:
{steps}

Its next step was wrong:
{wrong_step}

Write the correct next step, continuing the partial solution in the same style from where it stops. \
Reply with that one step only."""
REFERENCE_BLOCK = "\nReference solution:\n{reference}\n"


class CorrectorConfig(StageConfig):
    """How a model corrects a wrong step."""

    model: str = Field(description="the correcting model: a local directory, hub id, .gguf file or alias")
    prompt: str = Field(CORRECTOR_PROMPT, description="the user turn; {query}, {reference} (a 'Reference solution' "
                        "block or nothing), {steps} (the verified steps, one per line) and {wrong_step} are filled in")
    system: str | None = Field(None, description="a system turn, if any")
    reference_field: str | None = Field(None, description="record field with a reference solution to show the model")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(512, ge=1, description="tokens the model may write (a reasoning model thinks first)")
    seed: int = Field(0, description="sampling seed")
    batch_size: int = Field(32, ge=1, description="requests generated together (transformers backend)")
    backend: str = Field("auto", description="auto, transformers or vllm")
    dtype: str = Field("float32", description="model weights' dtype")
    device: str = Field("auto", description="auto: this rank's GPU if any, else CPU")


def corrector_prompt(r: CorrectionRequest, template: str = CORRECTOR_PROMPT) -> str:
    """The user turn asking for the wrong step of ``r`` again."""
    reference = REFERENCE_BLOCK.format(reference=r.reference) if r.reference else ""
    return template.format(query=r.query, reference=reference, steps="\n".join(r.verified) or "(no steps yet)",
                           wrong_step=r.wrong_step or "(the solution ended without a correct answer)")


def first_step(text: str, separator: str) -> str | None:
    """The step in a corrector's reply: after any ``</think>``, the first non-blank piece under ``separator``."""
    if THINK_CLOSE in text:
        text = text.rsplit(THINK_CLOSE, 1)[1]
    text = text.replace("<think>", "")
    piece = next((p.strip() for p in text.split(separator) if p.strip()), None)
    return piece


class ModelCorrector(Corrector):
    """Any model, through a generation backend (:mod:`oxa.generation`), prompted with :func:`corrector_prompt`.

    ``backend`` is any object with the backends' ``run(queries, jobs, params, fmt)``: a
    :class:`~oxa.generation.TransformersBackend` over a model in memory (the policy itself, during RL), or
    one built from a :class:`CorrectorConfig` (:meth:`from_config`).
    """

    def __init__(self, backend, *, separator: str = "\n", prompt: str = CORRECTOR_PROMPT, system: str | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 512, seed: int = 0):
        from oxa.generation.sampling import SamplingParams
        from oxa.prompting import PromptFormat

        self.backend = backend
        self.separator = separator
        self.template = prompt
        self.params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        self.fmt = PromptFormat(template=True, suffix="", system=system)

    @classmethod
    def from_config(cls, cfg: CorrectorConfig, *, separator: str = "\n") -> ModelCorrector:
        from oxa.generation.stage import SamplingConfig, make_backend

        sampling = SamplingConfig(batch_size=cfg.batch_size, backend=cfg.backend, dtype=cfg.dtype, device=cfg.device)
        return cls(make_backend(cfg.model, sampling), separator=separator, prompt=cfg.prompt, system=cfg.system,
                   temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)

    def correct(self, requests: Sequence[CorrectionRequest]) -> list[str | None]:
        from oxa.generation.sampling import sample_seed
        from oxa.generation.types import Job

        prompts = [corrector_prompt(r, self.template) for r in requests]
        jobs = [Job(key=i, query=i, seed=sample_seed(self.params.seed, prompts[i], 0)) for i in range(len(prompts))]
        texts: dict[int, str] = {}
        for batch in self.backend.run(prompts, jobs, self.params, self.fmt):
            texts.update((job.key, sampled.text) for job, sampled in batch)
        return [first_step(texts[i], self.separator) for i in range(len(requests))]
