"""The RL prompt prefilter keeps exactly the prompts solved min..max of k times, and reuses its result."""

from __future__ import annotations

import pytest

from oxa.errors import OxaError
from oxa.generation import Sampled
from oxa.io import read_records
from oxa.rl import RLConfig
from oxa.rl.prefilter import PrefilterConfig, prefilter_prompts

K = 4
SOLVED = [0, 1, 2, 4, 3, 1]  # how many of its K samples answer prompt i correctly


class Scripted:
    """A sampling backend whose sample s of prompt i is right when s < SOLVED[i] (and counts its calls)."""

    def __init__(self):
        self.drawn = 0

    def run(self, queries, jobs, params, fmt):
        batch = []
        for job in jobs:
            right = job.key % K < SOLVED[job.query]
            answer = job.query + 10 if right else -1
            batch.append((job, Sampled(f"<think>so</think> the answer is \\boxed{{{answer}}}", [1, 2], "stop")))
        self.drawn += len(batch)
        yield batch


def config(tmp_path, **prefilter) -> RLConfig:
    return RLConfig(model="unused", output_dir=tmp_path / "run", prompts="p", num_generations=2,
                    prefilter=PrefilterConfig(enabled=True, k=K, **prefilter))


RECORDS = [{"id": f"q{i}", "query": f"What is {i} + 10?", "answer": str(i + 10)} for i in range(len(SOLVED))]


@pytest.mark.parametrize(("bounds", "kept"), [({}, [1, 2, 4, 5]), ({"min_correct": 2, "max_correct": 4}, [2, 3, 4]),
                                              ({"min_correct": 0, "max_correct": 0}, [0])])
def test_keeps_the_prompts_solved_between_min_and_max_of_k(tmp_path, bounds, kept):
    cfg = config(tmp_path, **bounds)
    backend = Scripted()
    out = prefilter_prompts(RECORDS, cfg, backend=backend, log=lambda *_: None)
    assert [r["id"] for r in out] == [f"q{i}" for i in kept]
    assert [r["prefilter_correct"] for r in out] == [SOLVED[i] for i in kept]
    assert backend.drawn == K * len(RECORDS)
    assert read_records(tmp_path / "run" / "prefilter" / "prompts.jsonl") == out  # a record file oxa rl reads
    again = Scripted()
    assert prefilter_prompts(RECORDS, cfg, backend=again, log=lambda *_: None) == out and again.drawn == 0


def test_changed_settings_sample_again_and_an_empty_result_is_an_error(tmp_path):
    prefilter_prompts(RECORDS, config(tmp_path), backend=Scripted(), log=lambda *_: None)
    backend = Scripted()
    with pytest.raises(OxaError, match="no prompt"):
        prefilter_prompts(RECORDS[:1], config(tmp_path), backend=backend, log=lambda *_: None)  # q0: never solved
    assert backend.drawn == K


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="min_correct"):
        PrefilterConfig(k=4, min_correct=3, max_correct=2)
    with pytest.raises(ValueError, match="max_correct"):
        PrefilterConfig(k=4, max_correct=5)
    assert PrefilterConfig(k=8).upper == 7
