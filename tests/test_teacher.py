"""GSM8K solutions as teacher trajectories (oxa.data.teacher): the rewrite, and the real grader accepting it."""

from __future__ import annotations

from oxa.data.teacher import Gsm8kTeacherConfig, gsm8k_teacher_records, think_response


def test_a_gsm8k_solution_becomes_think_steps_and_a_boxed_answer():
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert think_response(solution, "72") == (
        "<think>\nNatalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72 clips.\n</think>\n\n\\boxed{72}")


def test_rewritten_training_solutions_grade_as_correct(shared_data, tmp_path):
    from oxa.verify import verify_records

    records = gsm8k_teacher_records(Gsm8kTeacherConfig(source="gsm8k-train", data_dir=shared_data, limit=30,
                                                       output=tmp_path / "t.jsonl"))
    assert len(records) == 30 and all(set(r) == {"id", "query", "answer", "response"} for r in records)
    assert not any("<<" in r["response"] or "####" in r["response"] for r in records)
    graded, summary = verify_records(records, workers=1, require_think=True)
    assert summary["correct"] == 30, [r["response"] for r in graded if not r["correct"]][:2]
