"""Group diversity: distinct final answers and distinct reasoning paths, general and in the synthetic world."""

from __future__ import annotations

import random

import pytest

from oxa.prm import (
    GroupDiversity,
    diversity_metrics,
    final_answer,
    group_diversity,
    planted_records,
    step_results,
    synthetic_group_diversity,
    synthetic_strategy,
)
from oxa.synth.problems import FAMILIES, make_problem
from oxa.synth.teacher import corrupt, solve, strategies_for


def test_step_results_are_the_values_each_step_reaches():
    a = "<think>\nFirst, 1,200 + 300 = 1500.\nThen halve it: 750.00\nNo number here.\n</think>\n\\boxed{750}"
    b = "<think>\n1200 plus 300 makes 1,500\nhalf of that is 750\n</think>\nThe answer is \\boxed{750}."
    c = "<think>\n750 * 2 = 1500\n1500 - 750 = 750\n</think>\n\\boxed{750}"
    assert step_results(a) == ("1500", "750") == step_results(b)
    assert step_results(c) == ("1500", "750")  # same intermediate values in the same order: the same path
    assert step_results("<think>\n2 + 3 = 5\n</think>\n\\boxed{5}") == ("5",)


def test_group_diversity_counts_by_hand():
    group = [
        "<think>\n1 + 2 = 3\n3 * 2 = 6\n</think>\n\\boxed{6}",
        "<think>\n1 + 2 = 3\nthen 3 * 2 = 6\n</think>\nSo \\boxed{ 6 }",  # same path, same answer
        "<think>\n2 * 2 = 4\n4 + 2 = 6\n</think>\n\\boxed{6}",  # another path to the same answer
        "<think>\n1 + 2 = 4\n4 * 2 = 8\n</think>\n\\boxed{8}",
        "<think>\n1 + 2 = 3",  # unfinished: answer "none", path ("3",)
    ]
    g = group_diversity(group)
    assert g == GroupDiversity(size=5, distinct_answers=3, distinct_paths=4)
    assert [final_answer(r) for r in group] == ["6", "6", "6", "8", "none"]
    m = diversity_metrics([g, GroupDiversity(4, 1, 2)])
    assert m["diversity/distinct_answers"] == 2 and m["diversity/distinct_paths"] == 3
    assert m["diversity/distinct_paths_share"] == pytest.approx((4 / 5 + 2 / 4) / 2)
    assert diversity_metrics([]) == {}


def test_synthetic_strategy_is_recovered_even_from_wrong_trajectories():
    rng = random.Random(0)
    hits = total = 0
    for i in range(80):
        p = make_problem(rng, FAMILIES[i % 4], 1 + i % 3, f"d{i}")
        for s in strategies_for(p):
            traj = solve(p, s) if i % 2 else corrupt(p, s, rng)
            hits += synthetic_strategy(p.to_record(), traj.response) == s
            total += 1
    assert hits / total > 0.97, (hits, total)
    p = make_problem(rng, "linear", 1, "x")
    assert synthetic_strategy(p.to_record(), "<think>\nI like turtles.\nVery much.\n</think>\n\\boxed{1}") == "other"


def test_synthetic_group_diversity_counts_the_planted_strategies():
    records = planted_records(6, seed=2)
    for q in range(6):
        group = records[5 * q : 5 * q + 5]  # one problem: a right trajectory and one per slip kind
        g = synthetic_group_diversity(group[0], [r["response"] for r in group])
        assert g.distinct_paths == len({r["strategy"] for r in group})
        assert g.distinct_answers == len({r["response"].rsplit("{", 1)[1].split("}")[0] for r in group})
