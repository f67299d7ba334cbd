"""The CE:UL batch composer: exact counts per step for any process/micro-batch layout, determinism, resumption."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from oxa.losses import CE, UL
from oxa.training.composer import BatchComposer, ComposedBatchSampler


def lengths(n, seed):
    return [5 + (i * 7919 + seed) % 50 for i in range(n)]


@pytest.mark.parametrize("world,mbs", [(1, 1), (2, 3), (3, 2), (8, 4), (16, 1)])
def test_every_step_has_exactly_the_requested_sequences(world, mbs):
    ce_len, ul_len = lengths(41, 1), lengths(13, 2)
    comp = BatchComposer(ce_len, ul_len, ce_per_step=8, ul_per_step=8, world_size=world, micro_batch_size=mbs, seed=3)
    assert comp.steps_per_epoch == 6  # ceil(41 / 8)
    seen_ce, seen_ul = Counter(), Counter()
    for step in range(comp.steps_per_epoch):
        # what the processes actually iterate, re-assembled per step
        batches = comp.plan_step(0, step)
        assert len(batches) == world * comp.grad_accum
        assert all(1 <= len(b) <= mbs for b in batches)  # nobody idles, nobody exceeds the micro-batch size
        rows = [r for b in batches for r in b if not r.filler]
        share = 1 if step < 5 else 1 / 8  # the last step holds 41 - 40 = 1 CE example: 1/8 of a step
        assert sum(r.kind == CE for r in rows) == sum(r.kind == UL for r in rows) == 8 * share
        assert abs(sum(r.norm for r in rows if r.kind == CE) - share) < 1e-9  # per-sequence mean over the step
        assert abs(sum(r.norm for r in rows if r.kind == UL) - share) < 1e-9
        seen_ce.update(r.index for r in rows if r.kind == CE)
        seen_ul.update(r.index for r in rows if r.kind == UL)
    assert seen_ce == Counter(range(41))  # one epoch = every CE example exactly once
    assert set(seen_ul) == set(range(13)) and max(seen_ul.values()) - min(seen_ul.values()) <= 1  # UL cycled evenly


def test_ranks_partition_the_plan_and_grad_accum_follows_from_the_batch():
    comp = BatchComposer(lengths(20, 0), lengths(20, 5), ce_per_step=128, ul_per_step=128, world_size=8,
                         micro_batch_size=4)
    assert comp.grad_accum == 8  # 256 rows / (8 processes x 4 rows)
    comp = BatchComposer(lengths(30, 0), lengths(9, 5), ce_per_step=5, ul_per_step=3, world_size=2, micro_batch_size=2)
    per_rank = [list(ComposedBatchSampler(comp, rank)) for rank in range(2)]
    ga = comp.grad_accum
    for step in range(comp.steps_per_epoch):
        plan = comp.plan_step(0, step)
        for slot, rank in itertools.product(range(ga), range(2)):
            assert per_rank[rank][step * ga + slot] == plan[slot * 2 + rank]


def test_token_mean_normaliser_counts_tokens_over_the_step():
    ce_len, ul_len = lengths(10, 0), lengths(10, 1)
    comp = BatchComposer(ce_len, ul_len, ce_per_step=4, ul_per_step=2, world_size=2, per_sequence=False)
    rows = [r for b in comp.plan_step(0, 1) for r in b if not r.filler]
    assert abs(sum(r.norm * ce_len[r.index] for r in rows if r.kind == CE) - 1) < 1e-9
    assert abs(sum(r.norm * ul_len[r.index] for r in rows if r.kind == UL) - 1) < 1e-9
    last = [r for b in comp.plan_step(0, 2) for r in b if not r.filler]  # 2 of 4 CE, so 1 of 2 UL: half a step
    assert sum(r.kind == CE for r in last) == 2 and sum(r.kind == UL for r in last) == 1
    assert abs(sum(r.norm * ce_len[r.index] for r in last if r.kind == CE) - 0.5) < 1e-9
    assert abs(sum(r.norm * ul_len[r.index] for r in last if r.kind == UL) - 0.5) < 1e-9


def test_seeded_deterministic_and_epochs_differ():
    args = (lengths(50, 0), lengths(20, 1))
    a = BatchComposer(*args, ce_per_step=7, ul_per_step=3, seed=11)
    b = BatchComposer(*args, ce_per_step=7, ul_per_step=3, seed=11)
    c = BatchComposer(*args, ce_per_step=7, ul_per_step=3, seed=12)
    assert list(a.rank_batches(0, 0)) == list(b.rank_batches(0, 0))
    assert list(a.rank_batches(0, 0)) != list(c.rank_batches(0, 0))
    assert a.step_indices(0, 0) != a.step_indices(1, 0)


def test_resuming_mid_epoch_continues_with_the_same_batches():
    from accelerate.data_loader import SkipBatchSampler

    comp = BatchComposer(lengths(40, 0), lengths(11, 1), ce_per_step=6, ul_per_step=4, world_size=2, micro_batch_size=3)
    full = ComposedBatchSampler(comp, rank=1)
    full.set_epoch(2)
    fresh = ComposedBatchSampler(BatchComposer(lengths(40, 0), lengths(11, 1), ce_per_step=6, ul_per_step=4,
                                               world_size=2, micro_batch_size=3), rank=1)
    fresh.set_epoch(2)
    skipped = SkipBatchSampler(fresh, skip_batches=5)  # what the Trainer wraps around us on resume
    assert list(skipped) == list(full)[5:]


def test_ul_only_and_small_steps_get_fillers():
    comp = BatchComposer([], lengths(5, 0), ce_per_step=4, ul_per_step=4, world_size=3)
    assert comp.steps_per_epoch == 2
    last = comp.plan_step(0, 1)
    assert sum(not r.filler for b in last for r in b) == 1  # the 5th UL example; the others are fillers
    assert all(r.norm == 0 for b in last for r in b if r.filler)
    with pytest.raises(ValueError):
        BatchComposer([], [], ce_per_step=1, ul_per_step=1)


def test_micro_batches_hold_similar_lengths_and_processes_get_equal_work():
    ce_len = lengths(64, 3)
    comp = BatchComposer(ce_len, [], ce_per_step=32, ul_per_step=1, world_size=2, micro_batch_size=4)
    plan = comp.plan_step(0, 0)
    groups = sorted(([ce_len[r.index] for r in b] for b in plan), key=max)
    assert all(max(a) <= min(b) for a, b in zip(groups, groups[1:]))  # no two micro-batches interleave in length
    cost = [sum(len(b) * max(ce_len[r.index] for r in b) for b in plan[rank::2]) for rank in range(2)]
    assert abs(cost[0] - cost[1]) <= max(len(g) * max(g) for g in groups)


def epoch_weights(comp: BatchComposer, epoch: int) -> tuple[dict, list]:
    """Each CE example's total weight over one epoch, and each step's (CE rows, UL rows, CE weight, UL weight)."""
    weight, steps = Counter(), []
    for step in range(comp.steps_per_epoch):
        rows = [r for b in comp.plan_step(epoch, step) for r in b if not r.filler]
        for r in rows:
            if r.kind == CE:
                weight[r.index] += r.norm
        steps.append((sum(r.kind == CE for r in rows), sum(r.kind == UL for r in rows),
                      sum(r.norm for r in rows if r.kind == CE), sum(r.norm for r in rows if r.kind == UL)))
    return weight, steps


def test_the_last_step_of_an_epoch_is_a_scaled_down_full_step():
    """130 CE + 64 UL at 128 + 128 per step: the 2 leftover CE rows come with 2 UL rows (not 128), and
    every row weighs what it weighs in a full step, so every CE example counts the same in the epoch."""
    comp = BatchComposer(lengths(130, 0), lengths(64, 1), ce_per_step=128, ul_per_step=128, world_size=2,
                         micro_batch_size=4, seed=1)
    assert comp.steps_per_epoch == 2
    weight, steps = epoch_weights(comp, 0)
    assert [s[:2] for s in steps] == [(128, 128), (2, 2)]
    assert steps[1][2] == pytest.approx(2 / 128) and steps[1][3] == pytest.approx(2 / 128)
    assert set(weight) == set(range(130)) and max(weight.values()) == pytest.approx(min(weight.values()))
    # the UL stream runs on across epochs without gaps or repeats: 130 UL uses per epoch spread evenly
    used = Counter(i for e in range(3) for s in range(2) for i in comp.step_indices(e, s)[1])
    assert sum(used.values()) == 3 * 130 and max(used.values()) - min(used.values()) <= 1


def test_drop_skips_the_incomplete_step_and_leaves_out_other_examples_each_epoch():
    comp = BatchComposer(lengths(130, 0), lengths(64, 1), ce_per_step=128, ul_per_step=128, last_step="drop")
    assert comp.steps_per_epoch == 1
    left_out = []
    for epoch in range(3):
        weight, steps = epoch_weights(comp, epoch)
        assert steps == [(128, 128, pytest.approx(1.0), pytest.approx(1.0))]
        left_out.append(set(range(130)) - set(weight))
    assert all(len(s) == 2 for s in left_out) and len({frozenset(s) for s in left_out}) == 3
    ul_only = BatchComposer([], lengths(9, 0), ce_per_step=1, ul_per_step=4, last_step="drop")
    assert ul_only.steps_per_epoch == 2 and all(len(ul_only.step_indices(0, s)[1]) == 4 for s in range(2))
    with pytest.raises(ValueError, match="fewer than ce_per_step"):
        BatchComposer(lengths(5, 0), lengths(5, 1), ce_per_step=8, ul_per_step=8, last_step="drop")
    with pytest.raises(ValueError, match="last_step"):
        BatchComposer(lengths(5, 0), [], ce_per_step=2, ul_per_step=1, last_step="keep")
