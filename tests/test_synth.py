"""The synthetic world: exact answers, a step checker that finds the first error, determinism, splits."""

from __future__ import annotations

import random

import pytest

from oxa.synth.checker import StepError, check_steps, evaluate, reasoning_lines
from oxa.synth.corpus import held_out, pretrain_documents
from oxa.synth.problems import DIFFICULTIES, FAMILIES, Problem, make_problem
from oxa.synth.teacher import ERROR_KINDS, corrupt, solve, strategies_for
from oxa.synth.world import WorldConfig, benchmark_records, build_world


def _problems(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(seed)
    return [make_problem(rng, FAMILIES[i % 4], 1 + (i // 4) % 3, f"t{i}") for i in range(n)]


def test_evaluate_is_exact_integer_arithmetic():
    assert evaluate("2 * (3 + 4) - 5") == 9
    assert evaluate("1086 mod 9") == 1086 % 9
    assert evaluate("-2 / -2") == 1
    with pytest.raises(StepError):
        evaluate("7 / 2")  # a division must come out even
    with pytest.raises(StepError):
        evaluate("__import__('os')")
    with pytest.raises(StepError):
        evaluate("2 ** 3")


def test_answers_are_independently_right():
    """Recompute each family's answer from the query text's structured data without the teacher."""
    for p in _problems(200):
        d = p.data
        if p.family == "chain":
            expected = d["start"]
            for op, x in d["ops"]:
                expected = {"+": expected + x, "-": expected - x, "*": expected * x, "/": expected // x}[op]
        elif p.family == "word":
            expected = d["start"] + sum(s * c * z for s, c, z in d["events"])
        elif p.family == "linear":
            a, b, c = d["a"], d["b"], d["c"]
            expected = next(x for x in range(0, 500) if {"ax+b": a * x + b, "ax-b": a * x - b,
                                                         "a(x+b)": a * (x + b)}[d["form"]] == c)
        else:
            expected = (sum(x * y for x, y in d["terms"]) + d["add"]) % d["m"]
        assert p.answer == expected, p.query
        assert str(p.difficulty) in "123" and p.family in FAMILIES


def test_every_teacher_trajectory_is_right_step_by_step():
    for p in _problems(120):
        responses = set()
        for s in strategies_for(p):
            t = solve(p, s)
            report = check_steps(p, t.response)
            assert report.correct and report.answer == p.answer and all(report.per_step), (s, t.response)
            assert len(report.steps) == len(t.steps)
            assert t.response.startswith("<think>\n") and t.response.endswith(f"\\boxed{{{p.answer}}}.")
            responses.add(t.response)
        assert len(responses) == len(strategies_for(p))  # strategies are genuinely different texts


def test_teacher_trajectories_verify_with_oxa_verify():
    from oxa.verify import verify_records

    world = build_world(WorldConfig(seed=3, n_queries=40, samples_per_query=3, teacher_error_rate=0.3,
                                    benchmark_per_difficulty=2, rl_prompts=2))
    graded, summary = verify_records(world["teacher"], workers=1, progress=False)
    assert summary["incorrect"] > 0 and summary["correct"] > 0
    for r in graded:
        assert r["correct"] == (r["planted_error"] is None), r["response"]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_checker_finds_the_planted_first_error_exactly(kind):
    rng = random.Random(kind)
    for p in _problems(160, seed=1):
        for s in strategies_for(p):
            wrong = corrupt(p, s, rng, kind=kind)
            clean = solve(p, s)
            assert wrong.boxed != p.answer
            report = check_steps(p, wrong.response)
            assert report.first_error == wrong.first_error, (kind, wrong.response)
            # independent of the checker: every step before the error is the clean solution's step
            steps_w = [line for line in reasoning_lines(wrong.response) if "=" in line]
            steps_c = [line for line in reasoning_lines(clean.response) if "=" in line]
            assert steps_w[: report.first_error] == steps_c[: report.first_error]
            if kind == "answer":
                assert report.first_error == len(report.steps) and all(report.per_step)
            else:
                assert steps_w[report.first_error] != steps_c[report.first_error]
                assert not report.per_step[report.first_error]


def test_checker_on_hand_written_responses():
    p = Problem("h", "chain", 1, "Start with 7. Add 5, then multiply by 3. What number do you get?", 36,
                {"start": 7, "ops": [["+", 5], ["*", 3]]})
    ok = check_steps(p, "<think>\nFirst: 7 + 5 = 12\nso 12 * 3 = 36\n</think>\n\\boxed{36}")
    assert ok.correct and ok.per_step == [True, True]
    arith = check_steps(p, "<think>\n7 + 5 = 13\n13 * 3 = 39\n</think>\n\\boxed{39}")
    assert arith.first_error == 0 and arith.steps[0].reason == "arithmetic"
    wrong_op = check_steps(p, "<think>\n7 + 5 = 12\n12 + 3 = 15\n</think>\n\\boxed{15}")
    assert wrong_op.first_error == 1 and wrong_op.steps[1].reason == "off track"
    no_box = check_steps(p, "<think>\n7 + 5 = 12\n12 * 3 = 36\n</think>\nThirty-six.")
    assert no_box.first_error == 2 and no_box.answer is None
    garbled = check_steps(p, "<think>\nLet me think about 7.\n7 + = 12\n</think>\n\\boxed{36}")
    assert garbled.first_error == 0 and garbled.steps[0].reason.startswith("unreadable")
    linear = Problem("l", "linear", 1, "Solve for x: 3x + 7 = 25. What is x?", 6, {"form": "ax+b", "a": 3, "b": 7, "c": 25})
    assert check_steps(linear, "<think>\n3x = 25 - 7 = 18\nx = 18 / 3 = 6\n</think>\n\\boxed{6}").correct
    assert check_steps(linear, "<think>\n3x = 25 + 7 = 32\nx = 32 / 3\n</think>\n\\boxed{10}").first_error == 0


def _world_in_another_process(cfg: WorldConfig, hash_seed: str) -> dict:
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from oxa.synth.world import WorldConfig, build_world, benchmark_records; "
            "cfg = WorldConfig.model_validate_json(sys.argv[1]); "
            "print(json.dumps({**build_world(cfg), 'registered': benchmark_records(6)}))")
    out = subprocess.run([sys.executable, "-c", code, cfg.model_dump_json()], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_world_is_deterministic_and_held_out_problems_stay_out():
    cfg = WorldConfig(seed=7, n_queries=30, samples_per_query=3, benchmark_per_difficulty=6, rl_prompts=10)
    random.seed(1)  # the world must not draw from the global random state ...
    a = build_world(cfg)
    random.seed(2)
    assert build_world(cfg) == a
    # ... nor depend on anything of this process (hash randomisation): another process builds the same world
    other = _world_in_another_process(cfg, hash_seed="12345")
    assert {k: other[k] for k in a} == json_roundtrip(a)
    assert build_world(cfg.model_copy(update={"seed": 8}))["teacher"] != a["teacher"]
    bench = {r["query"] for r in a["benchmark"]}
    assert len(bench) == len(a["benchmark"]) == 18 and all(held_out(q) for q in bench)
    assert {r["difficulty"] for r in a["benchmark"]} == set(DIFFICULTIES)
    teacher_q, rl_q = {r["query"] for r in a["teacher"]}, {r["query"] for r in a["rl"]}
    assert not bench & (teacher_q | rl_q) and not teacher_q & rl_q
    assert not bench & {d.problem.query for d in pretrain_documents(2000, seed=0, chat_share=0.0)}
    by_query: dict[str, set[str]] = {}
    for r in a["teacher"]:
        by_query.setdefault(r["query_id"], set()).add(r["strategy"])
    assert all(len(s) == 3 for s in by_query.values())  # distinct strategies before any repeat
    # the registered benchmarks are one fixed sample, whatever the world's seed, the global state or the process
    random.seed(3)
    assert json_roundtrip(benchmark_records(6)) == other["registered"]
    assert json_roundtrip(benchmark_records(6)) == json_roundtrip(build_world(cfg.model_copy(update={"seed": 0}))["benchmark"])


def json_roundtrip(obj):
    import json

    return json.loads(json.dumps(obj))


def test_registered_benchmarks_load_by_name():
    import oxa.synth  # noqa: F401  (registers the names)
    from oxa.data import load_benchmark

    hard = load_benchmark("synth-hard", limit=5)
    assert len(hard) == 5 and all(r["difficulty"] == 3 and r["id"].startswith("synth-hard") for r in hard)
    assert len(load_benchmark("synth")) == 3 * len(load_benchmark("synth-easy"))


def test_oxa_synth_cli_writes_the_splits(tmp_path):
    from typer.testing import CliRunner

    from oxa.cli import app
    from oxa.io import read_records

    out = tmp_path / "world"
    result = CliRunner().invoke(app, ["synth", str(out), "--world.seed", "2", "--world.n-queries", "12",
                                      "--world.samples-per-query", "2", "--world.benchmark-per-difficulty", "3",
                                      "--world.rl-prompts", "4"])
    assert result.exit_code == 0, result.output
    teacher = read_records(out / "teacher.jsonl")
    assert len(teacher) == 24 and len(read_records(out / "benchmark.jsonl")) == 9 and len(read_records(out / "rl.jsonl")) == 4
    assert all(check_steps(r, r["response"]).correct == (r["planted_error"] is None) for r in teacher)


def test_token_roles_tell_copied_operands_from_computed_results():
    from oxa.synth.diagnose import char_roles

    text = "<think>\n27 * 13 = 351\n</think>\n\\boxed{4}"
    roles = char_roles(text)
    by_char = dict(zip(range(len(text)), roles))
    assert [by_char[text.index("27") + i] for i in range(2)] == ["operand1", "operand"]
    assert [by_char[text.index("13") + i] for i in range(2)] == ["operand1", "operand"]
    assert [by_char[text.index("351") + i] for i in range(3)] == ["result1", "result", "result"]
    assert by_char[text.index("4}")] == "answer1"
    assert {roles[i] for i, c in enumerate(text) if not c.isdigit()} == {"format"}


def test_documents_are_packed_whole_and_never_split():
    from oxa.synth.basemodel import pack_documents

    rng = random.Random(3)
    docs = [[i] * rng.randint(1, 90) for i in range(300)] + [[999] * 150]  # one longer than a row: cut
    rows = pack_documents(docs, 128)
    assert all(len(r) <= 128 for r in rows)
    placed = sorted(tuple(x for x in r if x == i) for r in rows for i in set(r))  # each document's run per row
    expected = sorted(tuple(d[:128]) for d in docs)
    assert placed == expected  # every document sits whole in exactly one row
    assert sum(map(len, rows)) > 0.85 * 128 * len(rows)  # and the rows are mostly full (89 % here)
