"""A pool of worker processes that grades with a hard per-item deadline.

math-verify's own timeouts use ``signal.alarm`` (integer seconds, main thread only) and cannot stop
a hang inside C code such as sympy evaluating ``10^{10^{10}}``. So grading runs in worker processes
with its internal timeouts off; the parent watches each worker's current item and kills and
replaces a worker that passes the deadline, so one pathological answer costs at most the deadline.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

from oxa.verify.grade import Status, Task, grade_answer


def _die_with_parent(parent_pid: int, inherited: Sequence) -> None:
    """Tie a forked worker's life to its parent's: the kernel kills it when the parent dies (Linux),
    even mid-hang; and it drops the pipe ends it inherited (its own parent end, other workers'), so
    that a parent gone away reads as end-of-file instead of a pipe held open by a sibling."""
    for c in inherited:
        c.close()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(0)


def _worker_main(conn, clock, slot: int, parent_pid: int, inherited: Sequence, grade: Callable[..., str]) -> None:
    """Grade chunks of tasks with ``grade(*task)`` until told to stop. Before each item it stamps (start time, position in
    the chunk) into its slot of the shared ``clock`` so the parent can see what it is stuck on."""
    _die_with_parent(parent_pid, inherited)
    try:
        while (chunk := conn.recv()) is not None:
            statuses = []
            for pos, (pred, golds) in enumerate(chunk):
                clock[2 * slot] = time.monotonic()
                clock[2 * slot + 1] = pos
                try:
                    statuses.append(grade(pred, golds))
                except Exception:  # a sympy/antlr bug on one odd answer is that answer's problem only
                    statuses.append("unparsable")
            clock[2 * slot] = 0.0
            conn.send(statuses)
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the parent is gone or interrupted
        pass


class _Worker:
    def __init__(self, ctx, clock, slot: int, grade: Callable[..., str], siblings: Sequence[_Worker] = ()):
        self.conn, child = ctx.Pipe()
        inherited = [self.conn, *(w.conn for w in siblings)]
        self.proc = ctx.Process(target=_worker_main, args=(child, clock, slot, os.getpid(), inherited, grade), daemon=True,
                                name=f"oxa-verify-{slot}")
        self.proc.start()
        child.close()
        self.slot = slot
        self.chunk: list[int] | None = None  # task indices in flight

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(timeout=None if kill else 2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class GradingPool:
    """Worker processes that grade :data:`Task` lists with a hard per-item deadline.

    Use as a context manager and call :meth:`grade` as often as needed (workers are reused). A worker
    whose current item runs past ``timeout`` seconds is killed and replaced; that item is ``timeout``
    and the rest of its chunk is graded again. Workers are forked from this process after it has warmed
    math-verify up (imports, compiled patterns), so a replacement costs milliseconds. Fork rather than
    spawn/forkserver: those re-import the caller's ``__main__`` in every worker, which breaks scripts
    without a main guard and makes each replacement pay the CLI's imports. The children run only
    math-verify, so threads the parent may hold (torch) do not matter to them.

    ``grade(answer, golds)`` is what the workers run on each task: :func:`grade_answer` (``oxa verify``'s
    rule) by default; the RL reward passes its own. Any callable works (workers are forked, not pickled).
    """

    POLL_S = 0.02

    def __init__(self, workers: int = 2, timeout: float = 5.0, chunk_size: int | None = None,
                 grade: Callable[..., str] = grade_answer):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.n_workers, self.timeout, self.chunk_size = workers, float(timeout), chunk_size
        self._grade = grade
        self.killed = 0  # workers killed at the deadline or found dead
        self._unexplained = 0
        self._ctx = mp.get_context("fork")
        self._clock = self._ctx.Array("d", 2 * workers, lock=False)
        self._workers: list[_Worker] = []

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self._workers:
            w.stop(kill=w.chunk is not None)
        self._workers = []

    def _chunks(self, n: int) -> deque[list[int]]:
        # a few chunks per worker balance the load; 64 items amortise the message cost (benchmarks/verify.py)
        size = self.chunk_size or max(1, min(64, math.ceil(n / (4 * self.n_workers))))
        return deque(list(range(i, min(i + size, n))) for i in range(0, n, size))

    def grade(self, tasks: Sequence[Task], on_done: Callable[[int], None] | None = None) -> list[Status]:
        """Statuses for ``tasks`` in order. ``on_done(k)`` is called as k more tasks finish."""
        results: list[Status | None] = [None] * len(tasks)
        pending = self._chunks(len(tasks))
        if pending and not self._workers:  # started on first use: a run with nothing to grade forks nothing
            self._grade("0", ("0",))  # warm up before forking, so every worker inherits it
            for slot in range(self.n_workers):
                self._workers.append(_Worker(self._ctx, self._clock, slot, self._grade, self._workers))
        while pending or any(w.chunk is not None for w in self._workers):
            for w in self._workers:
                if w.chunk is None and pending:
                    w.chunk = pending.popleft()
                    self._clock[2 * w.slot] = 0.0
                    try:
                        w.conn.send([tasks[i] for i in w.chunk])
                    except OSError:  # it died while idle; its replacement gets the chunk
                        self._replace(w, pending, results, on_done)
            busy = [w for w in self._workers if w.chunk is not None]
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=self.POLL_S))
            for w in busy:
                if w.conn in ready:
                    try:
                        statuses = w.conn.recv()
                    except (EOFError, OSError):
                        self._replace(w, pending, results, on_done)
                        continue
                    for i, status in zip(w.chunk, statuses):
                        results[i] = status
                    if on_done:
                        on_done(len(w.chunk))
                    w.chunk = None
                elif w.proc.sentinel in ready or self._overdue(w):
                    self._replace(w, pending, results, on_done)
        return results  # type: ignore[return-value]

    def _current(self, w: _Worker) -> tuple[float, int] | None:
        """(start time, chunk position) of the item ``w`` is on, read consistently; None if idle."""
        while True:
            started = self._clock[2 * w.slot]
            pos = int(self._clock[2 * w.slot + 1])
            if self._clock[2 * w.slot] == started:
                return (started, pos) if started > 0 else None

    def _overdue(self, w: _Worker) -> bool:
        current = self._current(w)
        return current is not None and time.monotonic() - current[0] > self.timeout

    def _replace(self, w: _Worker, pending: deque, results: list, on_done) -> None:
        """Kill ``w``, mark its current item ``timeout``, requeue the rest of its chunk, start a new worker."""
        current = self._current(w)
        chunk, w.chunk = w.chunk or [], None
        w.stop(kill=True)
        self.killed += 1
        if current is not None and current[1] < len(chunk):
            culprit = chunk[current[1]]
            results[culprit] = "timeout"
            if on_done:
                on_done(1)
            rest = [i for i in chunk if i != culprit]
        else:  # died between items: nothing to blame, just redo the chunk
            rest = chunk
            self._unexplained += 1
            if self._unexplained > 3 * self.n_workers:
                raise RuntimeError("grading workers keep dying before they start an item; see their stderr above")
        if rest:
            pending.appendleft(rest)
        others = [o for o in self._workers if o is not w]
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self._clock, w.slot, self._grade, others)
