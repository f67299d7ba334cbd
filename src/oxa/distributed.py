"""Ranks, shards and the end-of-run merge for stages launched with ``torchrun`` or ``accelerate launch``.

Such a launcher starts K copies of the same command and tells each its rank in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). Each copy works on its own shard of the input and appends
its results to its own resumable part file beside the output, ``<out>.rank<r>-of-<K>.partial``. When
every rank is done (a barrier), rank 0 merges all parts into the single output file. The output's
directory must therefore be visible to every rank (one machine, or a shared filesystem), as for any
multi-process job that writes one file.

A re-run picks up results from every part it finds, whatever process count wrote them, so a job
preempted on 8 GPUs can finish on 2. A small run file (``<out>.run.json``) records what the partial
results were computed with; resuming with different settings, or from partial results with no run file,
is refused instead of mixing results. ``oxa verify`` uses the same run file in a single process.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from oxa.errors import OxaError
from oxa.io import ResumableWriter, write_json

# A rank that finishes its shard early waits at the final barrier for the slowest one; the wait may be
# long, so the timeout is generous (a crashed rank makes torchrun stop the others anyway).
BARRIER_TIMEOUT = timedelta(hours=24)


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` when not launched by torchrun/accelerate."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise OxaError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} are not integers") from None
    if world < 1 or not 0 <= rank < world:
        raise OxaError(f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def default_device() -> str:
    """This rank's GPU (``cuda:<LOCAL_RANK>``) when there is one, else ``cpu``; ``ACCELERATE_USE_CPU=1`` forces CPU."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return "cpu"
    if torch.cuda.is_available():
        return f"cuda:{local_rank() % torch.cuda.device_count()}"
    return "cpu"


def shard(n: int, rank: int, world: int) -> range:
    """The items ``0..n-1`` owned by ``rank``: every ``world``-th one, so costs spread evenly over ranks."""
    return range(rank, n, world)


def _group():
    """The default process group, started (gloo: CPU tensors, works beside any GPU backend) if needed."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return dist


def barrier() -> None:
    """Wait until every rank gets here (a no-op in a single process)."""
    if dist_info()[1] > 1:
        _group().barrier()


def all_sum(value: int) -> int:
    """``value`` summed over all ranks (e.g. items each rank processed); itself in a single process."""
    if dist_info()[1] == 1:
        return value
    import torch

    dist = _group()
    t = torch.tensor([value], dtype=torch.long)
    if dist.get_backend() != "gloo":  # a group started by someone else (e.g. NCCL) wants device tensors
        t = t.to(default_device())
    dist.all_reduce(t)
    return int(t.item())


def shutdown() -> None:
    """Leave the process group, if one was started (avoids torch's warning at exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def part_files(out: Path) -> list[Path]:
    """Every resumable part of ``out`` on disk: the single-process one and any rank's, from any run."""
    out = Path(out)
    single = out.with_name(out.name + ".partial")
    ranked = sorted(Path(p) for p in glob.glob(glob.escape(str(out)) + ".rank*-of-*.partial"))
    return ([single] if single.exists() else []) + ranked


def run_file(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".run.json")


def open_part(out: str | os.PathLike, run: dict[str, Any], *, keep: Callable[[int], bool]) -> ResumableWriter:
    """This rank's resumable writer for ``out``, knowing the results earlier runs left in any part.

    ``run`` describes what determines the results (model, settings, input); partial results made with
    a different ``run``, or with none on record, are refused. ``keep(i)`` says whether input item ``i`` belongs to this rank:
    only those are loaded from other parts, so each rank holds just its own share in memory.
    """
    out = Path(out)
    rank, world = dist_info()
    run = json.loads(json.dumps(run, default=str))  # the form it has once stored, for comparison
    parts = part_files(out)
    if parts and not run_file(out).exists():
        raise OxaError(
            f"{out}: partial results with no record of the run that made them exist ({parts[0].name}, but no "
            f"{run_file(out).name}), so they may come from another input or settings; delete {parts[0].name} "
            f"and the other {out.name}.*partial files to start over"
        )
    if parts:
        stored = json.loads(run_file(out).read_text(encoding="utf-8"))
        if stored != run:
            changed = sorted(k for k in set(stored) | set(run) if stored.get(k) != run.get(k))
            raise OxaError(
                f"{out}: partial results of an earlier run with other settings exist (differs in: "
                f"{', '.join(changed)}); re-run with those settings, or delete {parts[0].name} and the other "
                f"{out.name}.*partial files to start over"
            )
    write_json(run_file(out), run)  # every rank writes the same content atomically
    writer = ResumableWriter(out, suffix="" if world == 1 else f".rank{rank}-of-{world}")
    for part in parts:
        if part != writer.path:
            writer.done.update((i, r) for i, r in ResumableWriter.load(part).items() if keep(i))
    return writer


def finish_parts(writer: ResumableWriter, n_expected: int, *, fmt: str | None = None) -> list[dict] | None:
    """Wait for all ranks, then rank 0 writes the merged output in input order; others return None.

    Rank 0 raises if any of the ``n_expected`` results is missing. All ranks return only once the
    output exists, so a script may read it right after.
    """
    writer.close()
    barrier()
    rank, _ = dist_info()
    records = None
    if rank == 0:
        others = [p for p in part_files(writer.out) if p != writer.path]
        records = writer.finish(n_expected, fmt=fmt, extra_parts=others)
        with contextlib.suppress(FileNotFoundError):
            run_file(writer.out).unlink()
    barrier()
    return records
