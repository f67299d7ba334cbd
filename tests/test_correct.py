"""Correctors: the teacher rewrites the first wrong step, any model can through the generation backend."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from oxa.prm import (
    CheckerPRM,
    CorrectionRequest,
    ModelCorrector,
    TeacherCorrector,
    apply_corrections,
    join_steps,
    locate_errors,
    planted_records,
    split_steps,
)
from oxa.prm.checker import problem_of
from oxa.prm.correct import CORRECTOR_PROMPT, corrector_prompt, first_step
from oxa.synth.checker import check_steps
from oxa.synth.prefix import consistent_solutions, finish, next_line
from oxa.synth.problems import make_problem
from oxa.synth.teacher import ERROR_KINDS, solve


def test_teacher_correction_then_teacher_finish_is_accepted_for_every_slip_kind():
    """Over many planted errors of each kind: the checker PRM finds the planted step, the teacher rewrites it,
    the teacher finishes, and both the step checker and oxa verify accept the result."""
    from oxa.verify import verify_records

    records = [r for r in planted_records(40, seed=7) if r["error_kind"] != "none"]
    prm = CheckerPRM()
    items = prm.inputs([r["query"] for r in records], [r["response"] for r in records], records)
    requests = locate_errors(prm, items)
    assert [q.error for q in requests] == [r["label"] for r in records]
    salvaged = apply_corrections(TeacherCorrector(), requests, "\n")
    finished, accepted = [], Counter()
    for r, s in zip(records, salvaged):
        assert s is not None
        assert s.request.prefix == r["response"][: s.request.steps.offset(s.request.error)]
        assert s.resume_text.startswith(s.request.prefix)
        a, b = s.off_policy_span
        assert s.resume_text[a:b] == s.correction != s.request.wrong_step
        full = finish(problem_of(r), s.resume_text)
        finished.append({**r, "response": full})
        accepted[r["error_kind"]] += check_steps(problem_of(r), full).correct
    assert accepted == Counter({kind: 40 for kind in ERROR_KINDS})
    graded, summary = verify_records(finished, workers=1, progress=False)
    assert summary["correct"] == len(finished)


def test_teacher_at_the_answer_and_after_a_complete_solution():
    p = make_problem(random.Random(3), "chain", 1, "c")
    clean = solve(p, "stepwise")
    wrong_answer = clean.response.replace(f"\\boxed{{{p.answer}}}", f"\\boxed{{{p.answer + 1}}}")
    steps = split_steps(wrong_answer)
    [fix] = TeacherCorrector().correct([CorrectionRequest(p.query, steps, len(steps) - 1, p.to_record())])
    assert fix == f"The answer is \\boxed{{{p.answer}}}."
    # one line too many inside the reasoning: the correction closes it and answers
    extra = clean.response.replace("\n</think>", "\n1 + 1 = 3\n</think>")
    steps = split_steps(extra)
    request = CorrectionRequest(p.query, steps, len(clean.lines), p.to_record())
    [s] = apply_corrections(TeacherCorrector(), [request], "\n")
    assert s.done and s.resume_text.endswith(f"</think>\nThe answer is \\boxed{{{p.answer}}}.")
    assert check_steps(p, s.resume_text).correct


def test_consistency_falls_back_on_values_when_the_wording_differs():
    p = make_problem(random.Random(5), "chain", 2, "c")
    stepwise = solve(p, "stepwise")
    reworded = [f"Next: {line}" for line in stepwise.lines[:2]]  # same values, other words
    found = consistent_solutions(p, reworded)
    assert {t.strategy for t, _ in found} >= {"stepwise", "labelled"}
    solution, i = found[0]
    assert list(solution.steps[:2]) == list(stepwise.steps[:2])
    assert i == solution.step_lines[1] + 1  # the line after its second computation
    assert next_line(p, ["999 + 1 = 1000"]) is None  # off track: nothing continues it


class FakeBackend:
    """Records the prompts it is given and answers from a script."""

    def __init__(self, replies):
        self.replies, self.prompts, self.fmt = replies, [], None

    def run(self, queries, jobs, params, fmt):
        self.prompts, self.fmt = list(queries), fmt
        yield [(job, type("S", (), {"text": self.replies[job.query]})()) for job in jobs]


def test_model_corrector_prompt_and_reply_parsing():
    steps = join_steps(["3 + 4 = 7", "7 * 2 = 15", "The answer is 15."], "\n")
    with_ref = CorrectionRequest("Start with 3. Add 4, then double.", steps, 1, reference="<think>\n3 + 4 = 7\n</think>")
    without = CorrectionRequest("Q2", join_steps(["1 + 1 = 3"], "\n"), 0)
    backend = FakeBackend(["\n7 * 2 = 14\nThe answer is 14.", "<think>\nhmm\n</think>\n1 + 1 = 2"])
    fixes = ModelCorrector(backend, separator="\n", system="Be exact.").correct([with_ref, without])
    assert fixes == ["7 * 2 = 14", "1 + 1 = 2"]
    assert backend.fmt.template and backend.fmt.suffix == "" and backend.fmt.system == "Be exact."
    assert backend.prompts[0] == CORRECTOR_PROMPT.format(
        query="Start with 3. Add 4, then double.", reference="\nReference solution:\n<think>\n3 + 4 = 7\n</think>\n",
        steps="3 + 4 = 7", wrong_step="7 * 2 = 15")
    assert "Reference solution" not in backend.prompts[1] and "(no steps yet)" in backend.prompts[1]
    assert first_step("  \n\n", "\n") is None


def test_model_corrector_through_the_transformers_backend_is_greedy_decoding(tiny_tokenizer, tiny_model_dir):
    """The corrector's reply is the first line of the model's greedy continuation of the chat prompt, decoded by hand."""
    from transformers import AutoModelForCausalLM

    from oxa.generation import TransformersBackend
    from oxa.prompting import PromptFormat, encode_prompt

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    request = CorrectionRequest("What is 2 + 2?", join_steps(["2 + 2 = 5"], "\n"), 0)
    corrector = ModelCorrector(TransformersBackend(model, tiny_tokenizer, batch_size=2), separator=" ",
                               max_new_tokens=12)
    [fix] = corrector.correct([request])
    ids = encode_prompt(tiny_tokenizer, corrector_prompt(request), PromptFormat(template=True, suffix=""))
    out = []
    with torch.no_grad():
        for _ in range(12):
            nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == tiny_tokenizer.eos_token_id:
                out.pop()
                break
    assert fix == first_step(tiny_tokenizer.decode(out), " ")


def test_requests_only_where_the_prm_finds_an_error():
    records = planted_records(3, seed=1)
    prm = CheckerPRM()
    requests = locate_errors(prm, prm.inputs([r["query"] for r in records], [r["response"] for r in records], records),
                             reference_field="strategy")
    assert [q is None for q in requests] == [r["label"] == -1 for r in records]
    assert all(q.reference == r["strategy"] for q, r in zip(requests, records) if q is not None)
    salvaged = apply_corrections(TeacherCorrector(), requests, "\n")
    assert [s is None for s in salvaged] == [q is None for q in requests]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_teacher_corrections_are_the_clean_solutions_line(kind):
    """At a planted slip the teacher writes the line the same strategy writes without the slip."""
    records = [r for r in planted_records(15, seed=11) if r["error_kind"] == kind]
    prm = CheckerPRM()
    requests = locate_errors(prm, prm.inputs([r["query"] for r in records], [r["response"] for r in records], records))
    for r, fix in zip(records, TeacherCorrector().correct(requests)):
        clean = split_steps(solve(problem_of(r), r["strategy"]).response).texts
        assert fix == clean[r["label"]]


def test_encode_salvage_marks_exactly_the_corrected_steps_tokens(tiny_tokenizer):
    from oxa.prm import encode_salvage

    record = [r for r in planted_records(2, seed=9) if r["error_kind"] == "arith"][0]
    prm = CheckerPRM()
    [request] = locate_errors(prm, prm.inputs([record["query"]], [record["response"]], [record]))
    [s] = apply_corrections(TeacherCorrector(), [request], "\n")
    ids, off = encode_salvage(tiny_tokenizer, s)
    assert tiny_tokenizer.decode(ids) == s.resume_text
    marked = [t for t, o in zip(ids, off) if o]
    assert tiny_tokenizer.decode(marked) == s.correction
    first = off.index(True)
    assert all(off[first : first + len(marked)]) and not any(off[first + len(marked) :])
    assert tiny_tokenizer.decode(ids[:first]) == s.request.prefix


def test_prm_verifier_agreement_by_hand():
    from oxa.prm import prm_verifier_agreement

    m = prm_verifier_agreement([None, 3, 0, None, 2], [False, False, False, True, True])
    assert m == {"missed_failures": pytest.approx(1 / 3), "flagged_successes": 0.5}
    assert prm_verifier_agreement([None], [True]) == {"flagged_successes": 0.0}
