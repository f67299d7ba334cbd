"""Answer extraction, grading (every real benchmark answer), the deadline pool, and `oxa verify`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oxa.commands import verify as verify_command
from oxa.errors import OxaError, RecordError
from oxa.io import read_records
from oxa.records import Fields
from oxa.verify import (GradingPool, Verdict, VerifyConfig, extract_answer, gold_answers, grade_answer, grade_many,
                        quick_status, summary_path, verify_file, verify_records)

BENCHMARK_FILES = ("aime24", "aime25", "hmmt25", "cmimc25", "brumo25", "minerva", "math500", "gsm8k")
HANG = "10^{10^{10}}"  # sympy evaluates this exactly, inside C code that no signal interrupts


def as_model_would_write(answer: str) -> str:
    """A response in the paper's format, with a decoy box inside the reasoning."""
    return (f"<think>\nFirst guess: \\boxed{{-1}}. Let me check that again.\n</think>\n\n"
            f"The final answer is $\\boxed{{{answer}}}$.")


# ------------------------------------------------------------------------------------ extraction


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>\\boxed{1}</think> so \\boxed{2} and then \\boxed{3}.", "3"),
    ("<think>a</think>b<think>\\boxed{1}</think> final: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("answer \\fbox{7}", "7"),
    ("so \\boxed 42.", "42"),
    ("no think tags, just \\boxed{ 5 }", "5"),
    ("\\boxed{4} and a cut-off \\boxed{1", "4"),
    ("the template's empty \\boxed{} then \\boxed{9}", "9"),
    ("\\boxed{9} restated as \\boxed{}", "9"),
])
def test_extract_answer_takes_last_complete_box_after_reasoning(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", [
    "", "The answer is 42.", "<think>\\boxed{42}</think> I am not sure.",
    "<think>cut off mid-reasoning \\boxed{42}", "\\boxedx{3}",
])
def test_extract_answer_none_without_a_final_box(text):
    assert extract_answer(text) is None


def test_extraction_stays_linear_on_degenerate_repetition():
    start = time.perf_counter()
    assert extract_answer("\\boxed{" * 50_000) is None
    assert extract_answer("\\boxed{1} then" + " \\boxed{\\frac{" * 50_000) == "1"
    assert time.perf_counter() - start < 2.0  # quadratic scanning would take minutes


def test_require_think_follows_the_rl_reward():
    assert extract_answer("\\boxed{3}") == "3"
    assert extract_answer("\\boxed{3}", require_think=True) is None
    assert extract_answer("<think>x</think>\\boxed{3}", require_think=True) == "3"


def test_gold_answers_normalise_minerva_numbers_and_wrappers():
    assert gold_answers(["9.6\n", "9.60 "]) == ("9.6", "9.60")
    assert gold_answers(42) == ("42",) and gold_answers(2.0) == ("2",) and gold_answers(0.25) == ("0.25",)
    assert gold_answers("$\\frac{1}{2}$") == ("\\frac{1}{2}",) and gold_answers("$1$ or $2$") == ("$1$ or $2$",)
    assert gold_answers("\\boxed{x+1}") == ("x+1",)
    assert gold_answers("\\boxed{1}+\\boxed{2}") == ("\\boxed{1}+\\boxed{2}",)  # not one whole box
    assert gold_answers("1\\,000") == ("1000",)
    for bad in ("", [" "], [], True, None, float("nan"), {"a": 1}):
        with pytest.raises(ValueError):
            gold_answers(bad)


# --------------------------------------------------------------------------------------- grading


def _rows(name):
    """The records of a benchmark shipped with oxa, as `oxa eval` grades them."""
    from oxa.data import load_benchmark

    return load_benchmark(name)


def test_every_real_benchmark_answer_is_graded_correct():
    """Every row of every benchmark file, written the way a model would; every Minerva alternative."""
    responses, golds, where = [], [], []
    for name in BENCHMARK_FILES:
        for i, row in enumerate(_rows(name)):
            written = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
            for answer in written:
                responses.append(as_model_would_write(answer.strip()))
                golds.append(row["answer"])
                where.append(f"{name}[{i}] {answer!r}")
    assert len(responses) > 1000
    verdicts = grade_many(responses, golds, workers=2, timeout=10, progress=False)
    assert [(w, v) for w, v in zip(where, verdicts) if not v.correct] == []
    # the same answers through math-verify itself (grade_many decides most of them as exact matches)
    with GradingPool(workers=2, timeout=10) as pool:
        statuses = pool.grade([(v.pred, gold_answers(g)) for v, g in zip(verdicts, golds)])
    assert [(w, s) for w, s in zip(where, statuses) if s != "correct"] == []


def test_quick_status_agrees_with_math_verify():
    pairs = [("204", ("204",)), ("25", ("025",)), ("025", ("25",)), ("-0", ("0",)), ("7", ("8",)), ("-3", ("3",)),
             ("12", ("11", "12")), ("\\frac{1}{2}", ("\\frac{1}{2}",)), ("x+1", ("x+1",)), ("1\\,000", ("1000",)),
             ("100000000000000000000001", ("100000000000000000000000",))]
    for pred, golds in pairs:
        assert quick_status(pred, golds) == grade_answer(pred, golds), (pred, golds)
    assert quick_status("\\frac{2}{4}", ("\\frac{1}{2}",)) is None and quick_status("5", ("5.0",)) is None
    assert quick_status("1" * 101, ("1",)) is None  # not worth a huge int()


def test_equivalent_forms_a_model_writes_are_correct():
    aime = _rows("aime24")
    padded = [r["answer"] for r in aime if r["answer"].startswith("0")]
    assert padded, "AIME24 has zero-padded answers such as 025"
    cases = [(str(int(a)), a) for a in padded] + [
        ("1,080", "1080"), ("1{,}080", "1080"), ("1\\,080", "1080"), ("\\dfrac{14}{3}", "\\frac{14}{3}"),
        ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"), ("90", "90^\\circ"), ("x = 5", "5"),
        ("\\frac12", "0.5"), ("9.60", ["9.6\n", "9.7\n"]), ("\\$18", "18"),
    ]
    verdicts = grade_many([as_model_would_write(p) for p, _ in cases], [g for _, g in cases], progress=False)
    assert [v.status for v in verdicts] == ["correct"] * len(cases), list(zip(cases, verdicts))


def test_wrong_answers_are_incorrect():
    """Every integer gold, off by one (an independent computation), plus LaTeX near misses."""
    cases = []
    for name in BENCHMARK_FILES:
        for row in _rows(name):
            gold = row["answer"][0] if isinstance(row["answer"], list) else row["answer"]
            if re.fullmatch(r"-?\d+", gold.strip()):
                cases.append((str(int(gold) + 1), row["answer"]))
    assert len(cases) > 300
    cases += [("\\frac{1}{575}", "\\frac{1}{576}"), ("2^{98}", "2^{99}"), ("1-\\frac{2}{\\pi}", "1+\\frac{2}{\\pi}"),
              ("(3, 2)", "(2, 3)"), ("\\text{Bob}", "\\text{Evelyn}"), ("9.7", ["9.6\n"]), ("1000000", "1,000")]
    verdicts = grade_many([as_model_would_write(p) for p, _ in cases], [g for _, g in cases], progress=False)
    assert [v.status for v in verdicts] == ["incorrect"] * len(cases), [
        (c, v) for c, v in zip(cases, verdicts) if v.status != "incorrect"]


def test_unparsable_when_there_is_no_final_answer():
    responses = ["", "The answer is 5.", "<think>\\boxed{5}", "<think>\\boxed{5}</think> five", "\\boxed{5}"]
    verdicts = grade_many(responses, ["5"] * 5, progress=False)
    assert verdicts == [Verdict("unparsable", None)] * 4 + [Verdict("correct", "5")]
    assert [v.correct for v in verdicts] == [False] * 4 + [True]


def test_timeout_kills_the_hung_worker_and_the_run_continues():
    start = time.monotonic()
    verdicts = grade_many([f"\\boxed{{{HANG}}}"] + [f"\\boxed{{{i}}}" for i in range(20)],
                          ["1"] + [str(i) for i in range(20)], workers=2, timeout=1.0, progress=False)
    elapsed = time.monotonic() - start
    assert verdicts[0] == Verdict("timeout", HANG)
    assert all(v.correct for v in verdicts[1:])
    assert elapsed < 1.0 + 3.0  # the hang cost its deadline, not the seconds-to-hours sympy would take


def test_items_after_the_hung_one_in_its_chunk_are_still_graded():
    tasks = [("1", ("1",)), ("2", ("3",)), (HANG, ("1",)), ("4", ("4",)), (HANG, ("2",)), ("x", ("x",))]
    with GradingPool(workers=1, timeout=1.0, chunk_size=len(tasks)) as pool:
        statuses = pool.grade(tasks)
        again = pool.grade([("7", ("7",))])  # the replacement worker serves later calls
    assert statuses == ["correct", "incorrect", "timeout", "correct", "timeout", "correct"]
    assert pool.killed == 2 and again == ["correct"]


def test_a_grader_crash_is_an_error_not_an_unparsable_answer(monkeypatch):
    """An exception inside the grader, or a worker process that dies mid-item, says nothing about the
    answer: such items get their own status, ``error``, and the summary counts them."""
    import os

    from oxa.verify import pool as pool_module
    from oxa.verify import summarize

    real = pool_module.grade_answer

    def flaky(pred, golds):
        if pred == "raise":
            raise RecursionError("a sympy bug on one odd answer")
        if pred == "die":
            os._exit(1)  # as a segfault in C code would end the worker
        return real(pred, golds)

    monkeypatch.setattr(pool_module, "grade_answer", flaky)  # workers fork on first use and inherit it
    tasks = [("raise", ("1",)), ("1/2", ("0.5",)), ("die", ("1",)), ("2/3", ("1",))]
    with GradingPool(workers=1, timeout=30, chunk_size=len(tasks)) as pool:
        assert pool.grade(tasks) == ["error", "correct", "error", "incorrect"]
    _, summary = verify_records([{"response": "\\boxed{raise}", "answer": "1"}, {"response": "", "answer": "1"}],
                                progress=False)
    assert summary["error"] == 1 and summary["unparsable"] == 1 and summary["accuracy"] == 0.0
    assert summarize(["error", "correct"]) == {"records": 2, "correct": 1, "incorrect": 0, "unparsable": 0,
                                               "timeout": 0, "error": 1, "accuracy": 0.5}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_die_with_their_parent_even_mid_hang():
    code = f"from oxa.verify import grade_many; grade_many([r'\\boxed{{{HANG}}}'], ['1'], timeout=300, progress=False)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    deadline = time.monotonic() + 30
    while len(workers := children.read_text().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2
    parent.kill()
    parent.wait()

    def alive(pid: str) -> bool:  # a zombie waiting for init to reap it is dead
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"

    deadline = time.monotonic() + 5
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(alive, workers))


def test_pool_settings_are_checked():
    with pytest.raises(ValueError, match="workers"):
        GradingPool(workers=0)
    with pytest.raises(ValueError, match="timeout"):
        GradingPool(timeout=0)
    with pytest.raises(ValueError, match="2 gold"):
        grade_many(["a"], ["1", "2"], progress=False)


# ---------------------------------------------------------------------------------- records & CLI


def test_verify_records_keeps_fields_maps_names_and_counts(tmp_path):
    records = [
        {"uid": "a", "out": as_model_would_write("12"), "gold": 12, "extra": [1]},
        {"uid": "b", "out": as_model_would_write("12"), "gold": "12"},  # same pair: graded once
        {"uid": "c", "out": as_model_would_write("13"), "gold": "12"},
        {"uid": "d", "out": "", "gold": "12"},
        {"uid": "e", "gold": "12"},
        {"uid": "f", "out": "\\boxed{1}", "gold": None},
    ]
    fields = Fields(id="uid", response="out", answer="gold")
    with pytest.raises(RecordError, match=r"mine: record 5: field 'out' is missing"):
        verify_records(records, fields, progress=False, source="mine")
    out, summary = verify_records(records, fields, progress=False, skip_bad=True)
    assert [r["uid"] for r in out] == ["a", "b", "c", "d"]
    assert out[0] == {**records[0], "correct": True, "pred": "12", "verdict": "correct"}
    assert [r["verdict"] for r in out] == ["correct", "correct", "incorrect", "unparsable"]
    assert summary["correct"] == 2 and summary["incorrect"] == 1 and summary["unparsable"] == 1
    assert summary["records"] == 4 and summary["accuracy"] == 0.5 and summary["skipped"] == 2
    assert summary["distinct_graded"] == 2  # ("12", 12) and ("12", "12") normalise to the same pair


@pytest.fixture
def cli():
    app = typer.Typer()
    app.callback()(lambda: None)  # keep `verify` a sub-command, as in the real app
    verify_command.register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["verify", *map(str, args)], catch_exceptions=True)


def _write_jsonl(path, rows, blank_line_at=None):
    lines = [json.dumps(r) for r in rows]
    if blank_line_at is not None:
        lines.insert(blank_line_at, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_cli_writes_output_and_summary_jsonl_and_parquet(tmp_path, cli):
    rows = [{"id": i, "response": as_model_would_write(str(i % 3)), "answer": str(i % 2)} for i in range(8)]
    rows.append({"id": 8, "response": f"\\boxed{{{HANG}}}", "answer": "2"})
    src = tmp_path / "in.jsonl"
    _write_jsonl(src, rows)
    for out in (tmp_path / "out.jsonl", tmp_path / "out.parquet"):
        result = cli(src, "-o", out, "--timeout", "1", "--no-progress")
        assert result.exit_code == 0, result.output
        graded = read_records(out)
        assert [r["id"] for r in graded] == list(range(9))
        expected = ["correct" if i % 3 == i % 2 else "incorrect" for i in range(8)] + ["timeout"]
        assert [r["verdict"] for r in graded] == expected
        summary = json.loads(summary_path(out).read_text())
        assert summary["timeout"] == 1 and summary["correct"] == expected.count("correct")
        assert summary["config"]["timeout"] == 1.0 and not out.with_name(out.name + ".partial").exists()


def test_cli_missing_field_names_file_line_and_field_or_is_skipped(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _write_jsonl(src, [{"response": "\\boxed{1}", "answer": "1"}, {"response": "\\boxed{1}"}], blank_line_at=1)
    result = cli(src, "-o", tmp_path / "out.jsonl", "--no-progress")
    assert isinstance(result.exception, RecordError)
    assert re.search(r"in\.jsonl:3: field 'answer' is missing", str(result.exception))
    result = cli(src, "-o", tmp_path / "out.jsonl", "--no-progress", "--skip-bad")
    assert result.exit_code == 0 and len(read_records(tmp_path / "out.jsonl")) == 1
    assert json.loads(summary_path(tmp_path / "out.jsonl").read_text())["skipped"] == 1


def test_cli_config_file_and_field_flags(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _write_jsonl(src, [{"text": "<think>x</think>\\boxed{7}", "gold": ["6", "7"]}, {"text": "\\boxed{7}", "gold": "7"}])
    config = tmp_path / "verify.yaml"
    config.write_text(f"input: {src}\noutput: {tmp_path / 'from_config.jsonl'}\nrequire_think: true\n"
                      "fields: {response: text, answer: wrong}\nprogress: false\n")
    result = cli("--config", config, "--answer-field", "gold")  # the flag overrides the file
    assert result.exit_code == 0, result.output
    assert [r["verdict"] for r in read_records(tmp_path / "from_config.jsonl")] == ["correct", "unparsable"]


def _interrupt_after(monkeypatch, blocks: int, config: VerifyConfig) -> None:
    """Run ``verify_file`` and interrupt it (as Ctrl-C would) once ``blocks`` blocks are graded and saved."""
    from oxa.verify import stage

    real, calls = stage.grade_distinct, []

    def grade_then_stop(*args, **kwargs):
        if len(calls) == blocks:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(stage, "grade_distinct", grade_then_stop)
        with pytest.raises(KeyboardInterrupt):
            verify_file(config)


def test_cli_resumes_from_partial_progress(tmp_path, cli, monkeypatch):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(src, [{"response": f"\\boxed{{{i}}}", "answer": str(i)} for i in range(5)])
    _interrupt_after(monkeypatch, 1, VerifyConfig(input=src, output=out, block_size=2, progress=False))
    partial = out.with_name(out.name + ".partial")
    done = [json.loads(line) for line in partial.read_text(encoding="utf-8").splitlines()]
    assert [r["_i"] for r in done] == [0, 1]
    done[1]["verdict"] = "from-before"  # marked, so we can tell it is not graded again
    partial.write_text("".join(json.dumps(r) + "\n" for r in done) + '{"_i": 2, "resp', encoding="utf-8")
    result = cli(src, "-o", out, "--block-size", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert [r["verdict"] for r in read_records(out)] == ["correct", "from-before", "correct", "correct", "correct"]
    assert not partial.exists() and not out.with_name(out.name + ".run.json").exists()


def test_resume_refuses_partial_results_of_another_input_or_settings(tmp_path, monkeypatch):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(a, [{"response": f"\\boxed{{{i}}}", "answer": str(i)} for i in range(5)])
    _write_jsonl(b, [{"response": "\\boxed{7}", "answer": str(i)} for i in range(5)])
    config = VerifyConfig(input=a, output=out, block_size=2, progress=False)
    _interrupt_after(monkeypatch, 1, config)
    with pytest.raises(OxaError, match=r"other settings.*differs in: input"):
        verify_file(config.model_copy(update={"input": b}))  # would have kept a's records 0 and 1
    with pytest.raises(OxaError, match="require_think"):
        verify_file(config.model_copy(update={"require_think": True}))
    # how the work is split does not change the results: a resume may use other blocks and workers
    summary = verify_file(config.model_copy(update={"block_size": 3, "workers": 1}))
    assert summary["correct"] == 5 and [r["answer"] for r in read_records(out)] == ["0", "1", "2", "3", "4"]
    # partial results without a record of the run that made them (e.g. left by an older oxa) are refused
    stray = tmp_path / "stray.jsonl"
    stray.with_name(stray.name + ".partial").write_text('{"_i": 0, "response": "x", "answer": "1"}\n')
    with pytest.raises(OxaError, match="no record of the run"):
        verify_file(config.model_copy(update={"output": stray}))
