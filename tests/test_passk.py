"""Pass@k against the exact combinatorial definition, and difficulty buckets."""

from __future__ import annotations

import random
from fractions import Fraction
from math import comb

import pytest

from oxa.evaluation import bucket_edges, bucket_gains, k_values, mean_pass_at_k, pass_at_k


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_matches_exact_fractions_over_random_cases():
    rng = random.Random(0)
    for _ in range(2000):
        n = rng.randint(1, 300)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12, rel=1e-9)


def test_known_values():
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(128, 0, 128) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # C(3,2)/C(5,2)
    # pass@1 is the fraction correct, so the mean over problems is the mean correctness
    assert mean_pass_at_k([(4, 1), (4, 3)], 1) == pytest.approx(0.5)


def test_refuses_k_above_n_and_bad_counts():
    with pytest.raises(ValueError, match="pass@5 needs at least 5 samples"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_k_values_are_powers_of_two_then_n():
    assert k_values(1) == [1]
    assert k_values(128) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert k_values(6) == [1, 2, 4, 6]


def test_bucket_edges_cover_every_count_once():
    assert bucket_edges(128) == [(0, 0), (1, 4), (5, 16), (17, 64), (65, 127), (128, 128)]
    for n in (1, 2, 4, 5, 8, 64, 100):
        covered = [c for lo, hi in bucket_edges(n) for c in range(lo, hi + 1)]
        assert covered == list(range(n + 1))


def test_bucket_gains_group_by_reference_counts():
    reference = [{"id": "p1", "n": 8, "correct": 0}, {"id": "p2", "n": 8, "correct": 2},
                 {"id": "p3", "n": 8, "correct": 3}, {"id": "p4", "n": 8, "correct": 8}]
    ours = [{"id": "p1", "n": 4, "correct": 1}, {"id": "p2", "n": 4, "correct": 4},
            {"id": "p3", "n": 4, "correct": 0}, {"id": "p4", "n": 4, "correct": 4}]
    rows = {r["bucket"]: r for r in bucket_gains(ours, reference)}
    assert list(rows) == ["0", "1-4", "5-7", "8"]
    assert rows["0"]["gain"] == pytest.approx(0.25)
    assert rows["1-4"]["problems"] == 2
    assert rows["1-4"]["pass@1"] == pytest.approx((1.0 + 0.0) / 2)
    assert rows["1-4"]["reference_pass@1"] == pytest.approx((2 / 8 + 3 / 8) / 2)
    assert rows["5-7"]["problems"] == 0 and rows["5-7"]["gain"] is None
    assert rows["8"]["gain"] == pytest.approx(0.0)
