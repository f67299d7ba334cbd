"""Grade model answers against gold answers: the paper's RL reward, safe to run on millions of records.

The answer a response commits to is the last ``\\boxed{}`` in the text after the last ``</think>``
(:func:`extract_answer`). It is compared with the gold answer(s) by math-verify, gold first
(``verify(gold, pred)`` is not symmetric). Each graded item gets one of four statuses:

* ``correct`` / ``incorrect``: an answer was found and math-verify judged it;
* ``unparsable``: no answer to grade: empty response, no ``\\boxed{}`` after the reasoning, a
  ``<think>`` that was never closed (a response cut off mid-reasoning), or a box math-verify cannot read;
* ``timeout``: grading exceeded the per-item deadline (or crashed its worker).

math-verify's own timeouts use ``signal.alarm`` (integer seconds, main thread only) and cannot stop
a hang inside C code such as sympy evaluating ``10^{10^{10}}``. So grading runs in a pool of worker
processes with its internal timeouts off; the parent watches each worker's current item and kills and
replaces a worker that passes the deadline, so one pathological answer costs at most the deadline.

Throughput: extraction happens in the parent (only short answer strings cross process boundaries);
identical (answer, gold) pairs are graded once (with n samples per query most answers repeat); an
answer written exactly as its gold, or an integer against integer golds, is decided without sympy
(:func:`quick_status`); the rest goes to the workers in chunks, one message per chunk, not per item.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from oxa.config import StageConfig
from oxa.errors import RecordError
from oxa.io import ReadStats, ResumableWriter, read_records, write_json
from oxa.records import Fields, get_field

Status = Literal["correct", "incorrect", "unparsable", "timeout"]
STATUSES: tuple[Status, ...] = ("correct", "incorrect", "unparsable", "timeout")
Gold = str | int | float | Sequence[str | int | float]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_BRACES = re.compile(r"[{}]")
_BARE_TOKEN = re.compile(r"[^\s{}$]+")
# "1\,000" / "1\!000": thin spaces used as thousands separators, which math-verify reads as a product.
_THIN_SPACE_IN_NUMBER = re.compile(r"(?<=\d)\\[,!]\s*(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class Verdict:
    """The outcome of grading one response: its status and the answer extracted from it (None if none)."""

    status: Status
    pred: str | None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# ---------------------------------------------------------------------------------------- extraction


def answer_region(text: str, *, require_think: bool = False) -> str | None:
    """The part of a response that holds its final answer, or None if it has none.

    That is the text after the last ``</think>``. Without one: None if a ``<think>`` was opened (the
    reasoning never finished) or ``require_think`` is set (the paper's RL reward gives 0), else all text.
    """
    end = text.rfind(THINK_CLOSE)
    if end >= 0:
        return text[end + len(THINK_CLOSE):]
    if require_think or THINK_OPEN in text:
        return None
    return text


def _box_content(text: str, start: int, end: int) -> tuple[str, int] | None:
    """The argument of the box command whose name ends at ``start``, and where the box stops: ``{...}``
    with nested braces, or the token of the brace-less form ``\\boxed 5``; None if not closed before
    ``end``. (A box left open where a later box starts can never close, so the caller passes that
    later box's start as ``end``, which keeps extraction linear even on degenerate repetitions.)"""
    i = start
    while i < end and text[i] in " \t\r\n":
        i += 1
    if i == end or text[i] != "{":
        m = _BARE_TOKEN.match(text, i, end) if i > start else None  # "\boxedx" is another command
        return (m.group().rstrip(".$"), m.end()) if m and m.group().rstrip(".$") else None
    depth = 0
    for m in _BRACES.finditer(text, i, end):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[i + 1:m.start()], m.end()
    return None


def extract_answer(text: str, *, require_think: bool = False) -> str | None:
    """The final answer of a response: the last complete, non-empty ``\\boxed{}`` (or ``\\fbox{}``)
    after the last ``</think>`` (see :func:`answer_region`), stripped; None if there is none."""
    region = answer_region(text or "", require_think=require_think)
    if region is None:
        return None
    end = len(region)
    for m in reversed(list(_BOX_COMMAND.finditer(region))):
        box = _box_content(region, m.end(), end)
        if box is not None and box[0].strip():
            return box[0].strip()
        end = m.start()
    return None


def normalize_answer(answer: str) -> str:
    """Undo the notation math-verify misreads: surrounding ``$``/``\\(\\)``, a whole-answer ``\\boxed{}``,
    trailing newlines (Minerva's golds), thin spaces as thousands separators (``1\\,000``)."""
    s = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        inner = s[len(left):-len(right)]
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right) and left not in inner:
            s = inner.strip()
            break
    for cmd in _BOX_COMMANDS:
        if s.startswith(cmd):
            box = _box_content(s, len(cmd), len(s))
            if box is not None and box[1] == len(s):
                s = box[0].strip()
            break
    return _THIN_SPACE_IN_NUMBER.sub("", s)


def gold_answers(gold: Gold) -> tuple[str, ...]:
    """The accepted answers as normalised strings: a string, a number, or a list where any may match.

    Raises ValueError for an empty gold, a boolean or a non-finite number (a data error, not a miss).
    """
    values = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError(f"gold answer must be text, a number or a list of them, got {type(v).__name__}")
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"gold answer is not a finite number: {v}")
            v = repr(int(v)) if v.is_integer() else repr(v)
        s = normalize_answer(str(v))
        if s:
            out.append(s)
    if not out:
        raise ValueError("gold answer is empty")
    return tuple(out)


# ------------------------------------------------------------------------------------------- grading


# math-verify's signal timeouts are off on purpose (the pool enforces the deadline): its warning about
# that, and its per-item debug logging, are noise
logging.getLogger("math_verify").setLevel(logging.ERROR)

_INTEGER = re.compile(r"-?\d{1,100}")


def quick_status(pred: str, golds: tuple[str, ...]) -> Status | None:
    """The verdict where math-verify's is known without sympy, else None: an answer written exactly as
    a gold is correct, and plain integers compare by value (``025`` = ``25``). Most answers of integer
    benchmarks (AIME, GSM8K) and most correct answers end here, at string speed in the parent."""
    p = normalize_answer(pred)
    if p in golds:
        return "correct"
    if _INTEGER.fullmatch(p) and all(_INTEGER.fullmatch(g) for g in golds):
        return "correct" if any(int(p) == int(g) for g in golds) else "incorrect"
    return None


@lru_cache(maxsize=8192)
def _parsed(answer: str) -> tuple:
    from math_verify import parse

    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def grade_answer(pred: str | None, golds: tuple[str, ...]) -> Status:
    """Grade one extracted answer against normalised golds, in this process and without a deadline
    (the pool supplies that). A gold math-verify cannot parse is compared as a string."""
    from math_verify import verify

    if pred is None:
        return "unparsable"
    target = _parsed(normalize_answer(pred))
    if not target:
        return "unparsable"
    gold = [x for g in golds for x in (_parsed(g) or (g,))]
    return "correct" if verify(gold, list(target), timeout_seconds=None) else "incorrect"


Task = tuple[str | None, tuple[str, ...]]  # (extracted answer, normalised golds)


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


def _worker_main(conn, clock, slot: int, parent_pid: int, inherited: Sequence) -> None:
    """Grade chunks of tasks until told to stop. Before each item it stamps (start time, position in
    the chunk) into its slot of the shared ``clock`` so the parent can see what it is stuck on."""
    _die_with_parent(parent_pid, inherited)
    try:
        while (chunk := conn.recv()) is not None:
            statuses = []
            for pos, (pred, golds) in enumerate(chunk):
                clock[2 * slot] = time.monotonic()
                clock[2 * slot + 1] = pos
                try:
                    statuses.append(grade_answer(pred, golds))
                except Exception:  # a sympy/antlr bug on one odd answer is that answer's problem only
                    statuses.append("unparsable")
            clock[2 * slot] = 0.0
            conn.send(statuses)
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the parent is gone or interrupted
        pass


class _Worker:
    def __init__(self, ctx, clock, slot: int, siblings: Sequence[_Worker] = ()):
        self.conn, child = ctx.Pipe()
        inherited = [self.conn, *(w.conn for w in siblings)]
        self.proc = ctx.Process(target=_worker_main, args=(child, clock, slot, os.getpid(), inherited), daemon=True,
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
    """

    POLL_S = 0.02

    def __init__(self, workers: int = 2, timeout: float = 5.0, chunk_size: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.n_workers, self.timeout, self.chunk_size = workers, float(timeout), chunk_size
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
            grade_answer("0", ("0",))  # warm up before forking, so every worker inherits it
            for slot in range(self.n_workers):
                self._workers.append(_Worker(self._ctx, self._clock, slot, self._workers))
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
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self._clock, w.slot, others)


@contextlib.contextmanager
def _progress(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(k)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not enabled)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda k: bar.advance(task, k)


def _grade_distinct(pool: GradingPool, tasks: Sequence[Task],
                    on_done: Callable[[int], None] | None = None) -> list[Verdict]:
    """Grade each distinct (answer, golds) pair once: without an answer ``unparsable``, by
    :func:`quick_status` where it knows, else by math-verify in the pool."""
    status: dict[Task, Status] = {}
    for k in dict.fromkeys(k for k in tasks if k[0] is not None):
        if (quick := quick_status(*k)) is not None:
            status[k] = quick
    todo = [k for k in dict.fromkeys(tasks) if k[0] is not None and k not in status]
    if on_done:
        on_done(len(status))
    status.update(zip(todo, pool.grade(todo, on_done)))
    return [Verdict(status[k] if k[0] is not None else "unparsable", k[0]) for k in tasks]


def _grade_tasks(tasks: Sequence[Task], workers: int, timeout: float,
                 progress: bool) -> tuple[list[Verdict], int, int]:
    """Verdicts of ``tasks`` from a fresh pool, with the number of distinct pairs and of workers killed."""
    n_distinct = len({t for t in tasks if t[0] is not None})
    with GradingPool(workers, timeout) as pool, _progress(n_distinct, "verify", progress) as advance:
        verdicts = _grade_distinct(pool, tasks, advance)
    return verdicts, n_distinct, pool.killed


def grade_many(responses: Sequence[str], golds: Sequence[Gold], *, workers: int = 2, timeout: float = 5.0,
               progress: bool = True, require_think: bool = False) -> list[Verdict]:
    """Grade ``responses[i]`` against ``golds[i]`` (a string, number, or list where any may match).

    Runs in ``workers`` processes; an item that takes longer than ``timeout`` seconds is ``timeout``.
    Raises ValueError for a malformed gold (see :func:`gold_answers`).
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    gold_keys = [gold_answers(g) for g in golds]
    tasks = [(extract_answer(r, require_think=require_think), g) for r, g in zip(responses, gold_keys)]
    return _grade_tasks(tasks, workers, timeout, progress)[0]


def summarize(verdicts: Sequence[Status]) -> dict[str, Any]:
    """Counts per status and the accuracy (correct / all records, unparsable and timed-out ones included)."""
    counts = Counter(verdicts)
    n = len(verdicts)
    return {"records": n, **{s: counts.get(s, 0) for s in STATUSES}, "accuracy": counts.get("correct", 0) / n if n else None}


def _task_of(record: dict, fields: Fields, locate: Callable[[int], str], i: int, require_think: bool) -> Task:
    """(extracted answer, normalised golds) of record ``i``, or RecordError naming its place and the field."""
    response, gold = record.get(fields.response), record.get(fields.answer)
    if response is None or gold is None:
        for name in (fields.response, fields.answer):
            get_field(record, name, where=locate(i))  # raises, naming the field and the fields present
    if not isinstance(response, str):
        raise RecordError(f"{locate(i)}: field {fields.response!r} must be text, got {type(response).__name__}")
    try:
        golds = gold_answers(gold)
    except ValueError as e:
        raise RecordError(f"{locate(i)}: field {fields.answer!r}: {e}") from None
    return extract_answer(response, require_think=require_think), golds


def _jsonl_lines(path: Path) -> list[int]:
    """1-based line number of each record :func:`oxa.io.read_records` yields from a JSONL file."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            with contextlib.suppress(ValueError):
                if line.strip() and isinstance(json.loads(line), dict):
                    lines.append(lineno)
    return lines


def _locator(source: str | Path) -> Callable[[int], str]:
    """``where(i)`` for record ``i`` of ``source``: ``file:line`` for a JSONL file, else ``source: record N``."""
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".ndjson") and path.is_file():
        lines: list[int] = []
        def where(i: int) -> str:
            if not lines:  # found only when a record is bad, which is rare: no cost on the good path
                lines.extend(_jsonl_lines(path))
            return f"{path}:{lines[i]}" if i < len(lines) else f"{path}: record {i + 1}"
        return where
    return lambda i: f"{source}: record {i + 1}"


def _tasks(records: Sequence[dict], fields: Fields, source: str | Path, require_think: bool, skip_bad: bool,
           stats: ReadStats) -> tuple[list[int], list[Task]]:
    """Positions of the gradeable records and their tasks; bad ones raise, or are skipped and counted."""
    kept, tasks = [], []
    where = _locator(source)
    for i, record in enumerate(records):
        try:
            tasks.append(_task_of(record, fields, where, i, require_think))
        except RecordError as e:
            if not skip_bad:
                raise
            stats.skip(str(e))
            continue
        kept.append(i)
    return kept, tasks


def _graded(record: dict, verdict: Verdict) -> dict:
    return {**record, "correct": verdict.correct, "pred": verdict.pred, "verdict": verdict.status}


def verify_records(records: Sequence[dict], fields: Fields = Fields(), *, workers: int = 2, timeout: float = 5.0,
                   progress: bool = True, require_think: bool = False, skip_bad: bool = False,
                   source: str = "records") -> tuple[list[dict], dict[str, Any]]:
    """Grade each record's response against its gold answer.

    Returns the records (all input fields kept) with ``correct`` (bool), ``pred`` (the extracted answer
    or None) and ``verdict`` (the status) added, and a summary of counts. A record lacking the response
    or answer field raises :class:`RecordError` naming ``source``, the record number and the field; with
    ``skip_bad`` it is left out and counted in ``summary["skipped"]``. An empty response is ``unparsable``.
    """
    stats = ReadStats()
    kept, tasks = _tasks(records, fields, source, require_think, skip_bad, stats)
    verdicts, n_distinct, killed = _grade_tasks(tasks, workers, timeout, progress)
    out = [_graded(records[i], v) for i, v in zip(kept, verdicts)]
    summary = {**summarize([v.status for v in verdicts]), "skipped": stats.skipped, "skip_reasons": stats.reasons,
               "distinct_graded": n_distinct, "workers_killed": killed}
    return out, summary


class VerifyConfig(StageConfig):
    """Settings of ``oxa verify`` (every field is also a command-line flag)."""

    input: Path
    output: Path
    fields: Fields = Fields()
    workers: int = Field(2, ge=1)
    timeout: float = Field(5.0, gt=0)
    require_think: bool = False
    skip_bad: bool = False
    block_size: int = Field(4096, ge=1)
    progress: bool = True


def summary_path(output: Path) -> Path:
    """Where ``oxa verify`` writes its summary: beside the output, ``<output>.summary.json``."""
    return output.with_name(output.name + ".summary.json")


def verify_file(config: VerifyConfig) -> dict[str, Any]:
    """What ``oxa verify`` runs: grade a record file, resumably, and write the output and its summary.

    Records are graded in blocks of ``block_size``; each finished block is appended to
    ``<output>.partial``, so an interrupted run re-run with the same output continues where it stopped.
    The summary (counts, accuracy, skipped records, settings, time) goes to :func:`summary_path`.
    """
    t0 = time.time()
    read = ReadStats()
    records = read_records(config.input, skip_bad=config.skip_bad, stats=read)
    bad = ReadStats()
    kept, tasks = _tasks(records, config.fields, str(config.input), config.require_think, config.skip_bad, bad)
    with ResumableWriter(config.output) as writer:
        todo = [j for j in range(len(kept)) if j not in writer.done]
        with GradingPool(config.workers, config.timeout) as pool, \
                _progress(len(kept), "verify", config.progress) as advance:
            advance(len(kept) - len(todo))
            for b in range(0, len(todo), config.block_size):
                block = todo[b:b + config.block_size]
                verdicts = _grade_distinct(pool, [tasks[j] for j in block])
                writer.add((j, _graded(records[kept[j]], v)) for j, v in zip(block, verdicts))
                advance(len(block))
        out = writer.finish(len(kept))
    summary = {
        **summarize([r["verdict"] for r in out]),
        "skipped": read.skipped + bad.skipped,
        "skip_reasons": (read.reasons + bad.reasons)[:5],
        "workers_killed": pool.killed,
        "input": str(config.input),
        "output": str(config.output),
        "seconds": round(time.time() - t0, 3),
        "config": config.model_dump(mode="json"),
    }
    write_json(summary_path(config.output), summary)
    return summary
