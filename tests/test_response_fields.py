"""One list of the fields that describe a response: every stage's own per-response fields are in it, and a
record built from another record's query (a new sample) carries none of the old response's values."""

from __future__ import annotations

from oxa.generation.generate import sample_record
from oxa.generation.types import Sampled
from oxa.records import RESPONSE_FIELDS, Fields
from oxa.scoring import Score
from oxa.verify import verify_records


def added_fields(before: dict, after: dict) -> set[str]:
    return set(after) - set(before)


def test_every_field_a_stage_writes_about_a_response_is_in_the_list(tmp_path):
    record = {"id": 1, "query": "1 + 1?", "response": "\\boxed{2}", "answer": "2"}
    verified, _ = verify_records([record], progress=False)
    assert added_fields(record, verified[0]) <= set(RESPONSE_FIELDS)

    assert set(Score(ppl=1.5, n_tokens=3, truncated=False).as_fields()) <= set(RESPONSE_FIELDS)

    from oxa.evaluation.run import EvalConfig, _grade

    cfg = EvalConfig(model="unused", benchmarks=["unused"], output=tmp_path, second_grader="deepscaler",
                     progress=False, workers=1)
    graded = _grade([record], cfg)
    assert added_fields(record, graded[0]) <= set(RESPONSE_FIELDS)

    sample = sample_record(record, "1", 0, Sampled("\\boxed{3}", [5, 6], "stop", 0.5, 0.4), Fields())
    own = added_fields(record, sample) - {"query_id", "sample"}  # which query and which draw: set anew
    assert own <= set(RESPONSE_FIELDS)


def test_a_new_sample_keeps_the_query_fields_and_none_of_the_old_response_fields():
    old = {field: f"old {field}" for field in RESPONSE_FIELDS}
    query = {"id": "q7", "query": "1 + 1?", "answer": "2", "source": "gsm8k", "response": "old", **old}
    sample = sample_record(query, "q7", 3, Sampled("\\boxed{2}", [1, 2, 3], "length"), Fields())
    assert {k: sample[k] for k in ("id", "query", "answer", "source")} == {"id": "q7", "query": "1 + 1?",
                                                                          "answer": "2", "source": "gsm8k"}
    assert sample["response"] == "\\boxed{2}" and sample["n_tokens"] == 3 and sample["finish_reason"] == "length"
    assert not any(str(v).startswith("old") for v in sample.values())  # e.g. no `verdict: "old verdict"`
