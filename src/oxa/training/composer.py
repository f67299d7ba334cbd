"""The CE:UL batch composer: which sequences every process trains on in every micro-batch.

The user fixes what one optimizer step contains -- ``ce_per_step`` CE sequences and ``ul_per_step`` UL
sequences (the paper: 128 + 128) -- and the composer derives everything else from it, so the recipe does
not change with the number of GPUs (the reference code's CE:UL ratio did: on 16 GPUs it trained on UL
only, and it dropped the CE rows of any micro-batch holding a UL row).

* An epoch is one pass over the CE set in a seeded random order (over the UL set when there is no CE
  set). UL sequences come from their own endless stream of seeded permutations, so a UL set smaller or
  larger than the epoch needs is cycled or spread over epochs without bias.
* The step's sequences, sorted by length, are cut into ``world_size x grad_accum`` micro-batches of
  consecutive rows (similar lengths: little padding), at most ``micro_batch_size`` rows each; CE and UL
  rows share micro-batches freely. The micro-batches go to processes largest padded cost first, each to
  the least loaded process, so the processes finish a step together. Micro-batch ``m`` of the plan runs
  on process ``m % world_size`` as accumulation slot ``m // world_size``. When a (last) step has fewer
  sequences than micro-batches, zero-weight filler rows keep every process doing the same number of
  forward/backward passes.
* Every row carries its normaliser over the *whole* step (``1/M`` sequences of its type, or ``1/K``
  tokens), so summing the weighted token losses over micro-batches and processes gives the full-batch
  loss exactly -- no per-micro-batch mean that would be wrong under accumulation or DDP.
* The end of an epoch (``last_step``): when the epoch's set is not a multiple of its per-step count
  (130 CE records at 128 per step), the last step holds only the remainder. ``"scale"`` (the default)
  makes it a scaled-down step: it holds the r leftover CE rows and the same share of UL rows
  (round(ul_per_step * r / ce_per_step)), and each row keeps the weight it has in a full step
  (``1/ce_per_step``, ``1/ul_per_step``; for the token mean, ``(r / M) / K``), so the step's loss is
  ``r / M`` times the usual one. Every example then weighs the same in the epoch and every step has the
  same CE:UL proportion; a plain mean over the remainder (what ``drop_last=False`` gives) would instead
  put 2 CE rows at full CE weight beside 128 UL rows. ``"drop"`` skips the incomplete step, as
  ``drop_last`` does: every step is full, and the examples left out differ from epoch to epoch.
* The plan of step ``s`` in epoch ``e`` is a pure function of (seed, e, s): every process computes the
  same plan without communication, and a run resumed mid-epoch sees the same next batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch.utils.data import Sampler

from oxa.losses import CE, UL

LastStep = Literal["scale", "drop"]


@dataclass(frozen=True)
class Row:
    """One row of a micro-batch: ``index`` into the CE or UL examples, its kind and its step normaliser."""

    kind: int  # CE or UL: which set ``index`` points into and which loss its tokens get
    index: int
    norm: float  # 1/M (per-sequence mean over M sequences of this kind in the step) or 1/K (token mean)
    filler: bool = False  # a zero-weight copy that only keeps processes in step; no loss


class BatchComposer:
    """Plans optimizer steps of ``ce_per_step`` CE + ``ul_per_step`` UL sequences over processes and micro-batches."""

    def __init__(
        self,
        ce_lengths: list[int],
        ul_lengths: list[int],
        *,
        ce_per_step: int,
        ul_per_step: int,
        world_size: int = 1,
        micro_batch_size: int = 1,
        seed: int = 0,
        per_sequence: bool = True,
        last_step: LastStep = "scale",
    ):
        """``*_lengths`` are the loss-token counts of the examples (they balance work and set token means)."""
        if not ce_lengths and not ul_lengths:
            raise ValueError("nothing to train on: both the CE and the UL set are empty")
        if ce_lengths and ce_per_step < 1 or ul_lengths and ul_per_step < 1:
            raise ValueError("ce_per_step and ul_per_step must be at least 1 for a non-empty set")
        if world_size < 1 or micro_batch_size < 1:
            raise ValueError("world_size and micro_batch_size must be at least 1")
        if last_step not in ("scale", "drop"):
            raise ValueError(f"last_step must be 'scale' or 'drop', got {last_step!r}")
        self.ce_lengths, self.ul_lengths = list(ce_lengths), list(ul_lengths)
        self.ce_per_step = ce_per_step if ce_lengths else 0
        self.ul_per_step = ul_per_step if ul_lengths else 0
        self.world_size, self.micro_batch_size = world_size, micro_batch_size
        self.seed, self.per_sequence, self.last_step = seed, per_sequence, last_step
        rows = self.ce_per_step + self.ul_per_step
        self.grad_accum = math.ceil(rows / (world_size * micro_batch_size))
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        if self.steps_per_epoch == 0:
            kind = "ce" if self.ce_lengths else "ul"
            n, per = self._epoch_set()
            raise ValueError(f"the {kind.upper()} set has {n} examples, fewer than {kind}_per_step = {per}: with "
                             f"last_step 'drop' an epoch has no step; lower {kind}_per_step or use last_step 'scale'")

    def _epoch_set(self) -> tuple[int, int]:
        """(examples, per step) of the set one epoch passes over: the CE set, or the UL set without one."""
        if self.ce_lengths:
            return len(self.ce_lengths), self.ce_per_step
        return len(self.ul_lengths), self.ul_per_step

    @property
    def steps_per_epoch(self) -> int:
        n, per = self._epoch_set()
        return n // per if self.last_step == "drop" else math.ceil(n / per)

    def _ul_beside(self, n_ce: int) -> int:
        """UL rows beside ``n_ce`` CE rows: ``ul_per_step`` in a full step, the same share in a scaled one."""
        if n_ce == self.ce_per_step:
            return self.ul_per_step
        return math.floor(self.ul_per_step * n_ce / self.ce_per_step + 0.5)  # rounded half up

    @property
    def micro_batches_per_step(self) -> int:
        return self.world_size * self.grad_accum

    def _permutation(self, stream: int, cycle: int, n: int) -> np.ndarray:
        key = (stream, cycle)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, stream, cycle]).permutation(n)
        return self._perms[key]

    def step_indices(self, epoch: int, step: int) -> tuple[list[int], list[int]]:
        """The CE and UL example indices of one optimizer step."""
        n_set, per = self._epoch_set()
        size = min(per, n_set - step * per)  # below ``per`` only in a scaled last step
        if self.ce_lengths:
            ce = self._permutation(0, epoch, n_set)[step * per:step * per + size].tolist()
            n_ul = self._ul_beside(size)
            full, rest = divmod(n_set, per)  # the UL stream's use per epoch: full steps, then the scaled last one
            last = self._ul_beside(rest) if rest and self.last_step == "scale" else 0
            position = epoch * (full * self.ul_per_step + last) + step * self.ul_per_step
        else:
            ce, n_ul = [], size
            position = epoch * n_set + step * per  # the UL set is the epoch: no wrap
        ul = []
        n = len(self.ul_lengths)
        for k in range(position, position + n_ul):
            ul.append(int(self._permutation(1, k // n, n)[k % n]))
        return ce, ul

    def plan_step(self, epoch: int, step: int) -> list[list[Row]]:
        """All ``world_size x grad_accum`` micro-batches of a step (micro-batch m runs on process m % world)."""
        ce, ul = self.step_indices(epoch, step)
        rows = [Row(CE, i, self._norm(ce, self.ce_lengths, self.ce_per_step)) for i in ce]
        rows += [Row(UL, i, self._norm(ul, self.ul_lengths, self.ul_per_step)) for i in ul]
        length = {(CE, i): self.ce_lengths[i] for i in ce} | {(UL, i): self.ul_lengths[i] for i in ul}
        rows.sort(key=lambda r: (-length[r.kind, r.index], r.kind, r.index))
        # consecutive rows of similar length share a micro-batch (little padding) ...
        n_mb, n_rows = self.micro_batches_per_step, len(rows)
        sizes = [n_rows // n_mb + (m < n_rows % n_mb) for m in range(n_mb)]
        starts = np.cumsum([0, *sizes])
        groups = [rows[starts[m]:starts[m + 1]] for m in range(n_mb)]
        for m, group in enumerate(groups):
            if not group:  # fewer rows than micro-batches: a zero-weight copy keeps every process stepping
                groups[m] = [Row(rows[-1].kind, rows[-1].index, 0.0, filler=True)]

        # ... and the micro-batches go to processes by padded cost, largest first, to the least loaded one
        def cost(group):
            return len(group) * max(length[r.kind, r.index] for r in group)

        load, owned = [0] * self.world_size, [[] for _ in range(self.world_size)]
        for group in sorted(groups, key=cost, reverse=True):
            rank = min((k for k in range(self.world_size) if len(owned[k]) < self.grad_accum), key=lambda k: (load[k], k))
            owned[rank].append(group)
            load[rank] += cost(group)
        return [owned[rank][slot] for slot in range(self.grad_accum) for rank in range(self.world_size)]

    def _norm(self, indices: list[int], lengths: list[int], per_step: int) -> float:
        """A row's weight: its share of the step's mean, times the step's share of a full step (1 but in a
        scaled last step): ``1/per_step`` per sequence, ``(m/per_step) / K`` per token (m rows, K tokens)."""
        if self.per_sequence:
            return 1.0 / per_step
        return len(indices) / per_step / max(1, sum(lengths[i] for i in indices))

    def rank_batches(self, epoch: int, rank: int) -> Iterator[list[Row]]:
        """Process ``rank``'s micro-batches of one epoch, step after step."""
        for step in range(self.steps_per_epoch):
            batches = self.plan_step(epoch, step)
            for slot in range(self.grad_accum):
                yield batches[slot * self.world_size + rank]


class ComposedBatchSampler(Sampler[list[Row]]):
    """One process's micro-batches as a DataLoader ``batch_sampler``; ``set_epoch`` selects the epoch."""

    def __init__(self, composer: BatchComposer, rank: int):
        self.composer, self.rank, self.epoch = composer, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[Row]]:
        return self.composer.rank_batches(self.epoch, self.rank)

    def __len__(self) -> int:
        return self.composer.steps_per_epoch * self.composer.grad_accum
