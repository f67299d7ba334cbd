"""The sets oxa knows by name: the evaluation sets shipped in ``oxa/data/sets``, hub sets, and the OXA
paper's own RL files (read from a data directory).

A shipped set is one gzipped JSONL file with only the fields evaluation needs, ``problem`` and
``answer``. :func:`pack_shipped` builds those files from the public originals (see ``sets/README.md``
for each file's source and license) and is how they were made:
``python -m oxa.data pack DIR`` with DIR laid out as the originals' ``SOURCES`` paths say.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from oxa.data.fields import canonical, clean_answer, gsm8k_final_answer
from oxa.data.registry import DatasetInfo, data_dir_loader, hub_loader, register_benchmark
from oxa.io import iter_records

PAPER_BENCHMARKS = ("aime24", "aime25", "hmmt25", "cmimc25", "brumo25", "minerva")
"""The six benchmarks of the OXA paper's main table."""

MATHARENA = "CC BY-NC-SA 4.0 (MathArena)"

SHIPPED: dict[str, DatasetInfo] = {
    "aime24": DatasetInfo(
        "AIME 2024 I and II", 30, "shipped",
        "American Invitational Mathematics Examination 2024 (problems (c) the MAA); the file of the DeepScaleR "
        "repository (agentica-project/rllm) that the OXA paper evaluates on",
        "MIT (DeepScaleR); problem texts (c) MAA"),
    "aime25": DatasetInfo(
        "AIME 2025 I and II", 30, "shipped",
        "American Invitational Mathematics Examination 2025 as transcribed on the AoPS wiki (problems (c) the MAA); "
        "the OXA paper's evaluation file, laid out as the Hugging Face set yentinglin/aime_2025",
        "no license stated for the collection; problem texts (c) MAA"),
    "brumo25": DatasetInfo(
        "Brown University Math Olympiad 2025", 30, "shipped",
        "MathArena (Balunovic et al., 2025), hf:MathArena/brumo_2025", MATHARENA),
    "cmimc25": DatasetInfo(
        "Carnegie Mellon Informatics and Mathematics Competition 2025", 40, "shipped",
        "MathArena (Balunovic et al., 2025), hf:MathArena/cmimc_2025", MATHARENA),
    "hmmt25": DatasetInfo(
        "Harvard-MIT Mathematics Tournament, February 2025", 30, "shipped",
        "MathArena (Balunovic et al., 2025), hf:MathArena/hmmt_feb_2025", MATHARENA),
    "minerva": DatasetInfo(
        "Minerva's OCWCourses: undergraduate STEM problems; answers are lists, any may match", 272, "shipped",
        "Lewkowycz et al. (2022), problems from MIT OpenCourseWare; the file of the DeepScaleR repository",
        "CC BY-NC-SA 4.0 (MIT OpenCourseWare)"),
    "math500": DatasetInfo(
        "MATH-500: the MATH test problems of OpenAI's PRM800K split", 500, "shipped",
        "Hendrycks et al. (2021) MATH, subset of Lightman et al. (2023); the file of the DeepScaleR repository",
        "MIT"),
    "gsm8k": DatasetInfo(
        "GSM8K test; the answer is the number after '####'", 1319, "shipped",
        "Cobbe et al. (2021), github.com/openai/grade-school-math, hf:openai/gsm8k/main:test", "MIT"),
}

SOURCES: dict[str, str] = {
    **{name: f"benchmarks/{name}.json" for name in (*PAPER_BENCHMARKS, "math500")},
    "gsm8k": "gsm8k/test.jsonl",
}
"""Where :func:`pack_shipped` finds each shipped set's original, relative to the directory it is given."""

SETS = "sets"


def shipped_path(name: str):
    """The packaged file of a shipped set (a Traversable; a plain path in an ordinary install)."""
    return resources.files("oxa.data") / SETS / f"{name}.jsonl.gz"


def shipped_rows(name: str) -> list[dict]:
    """The rows of a shipped set as packaged: ``problem`` and ``answer``."""
    with shipped_path(name).open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _shipped_loader(name: str, as_name: str | None = None) -> Callable[[Path | None], list[dict]]:
    def load(data_dir: Path | None) -> list[dict]:
        label = as_name or name
        return [canonical(r, label, i, f"{shipped_path(name)}: record {i + 1}", None)
                for i, r in enumerate(shipped_rows(name))]

    return load


def packed_row(row: dict) -> dict:
    """What is shipped of an original row: the problem text and the gold answer(s), stripped."""
    problem = row.get("problem", row.get("question"))
    answer = row["answer"]
    if isinstance(answer, str) and "####" in answer:  # GSM8K: the worked solution ends in '#### 42'
        answer = gsm8k_final_answer(answer)
    return {"problem": problem, "answer": clean_answer(answer)}


def pack_shipped(source_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, int]:
    """Write ``sets/<name>.jsonl.gz`` for every shipped set from its original under ``source_dir``;
    returns the bytes written per file. The gzip header carries no time, so the output is reproducible."""
    from oxa.io import atomic_open

    out = Path(out_dir) if out_dir is not None else Path(__file__).parent / SETS
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, relative in SOURCES.items():
        text = "".join(json.dumps(packed_row(r), ensure_ascii=False) + "\n" for r in iter_records(Path(source_dir) / relative))
        data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
        with atomic_open(out / f"{name}.jsonl.gz", "wb") as f:
            f.write(data)
        sizes[name] = len(data)
    return sizes


for _name, _info in SHIPPED.items():
    register_benchmark(_name, _shipped_loader(_name), _info)

register_benchmark("aime24-val", _shipped_loader("aime24", "aime24-val"), DatasetInfo(
    "the OXA paper's RLVR validation set: AIME24 (its verl file holds the same 30 problems and answers)", 30,
    "shipped (as aime24)", SHIPPED["aime24"].source, SHIPPED["aime24"].license))
register_benchmark("gsm8k-train", hub_loader("gsm8k-train", "hf:openai/gsm8k/main:train", mirror="gsm8k/train.jsonl"),
                   DatasetInfo("GSM8K train; the answer is the number after '####'", 7473,
                               "hf:openai/gsm8k/main:train (or $OXA_DATA_DIR/gsm8k/train.jsonl)",
                               "Cobbe et al. (2021), github.com/openai/grade-school-math", "MIT"))
register_benchmark("deepscaler-preview", hub_loader("deepscaler-preview", "hf:agentica-org/DeepScaleR-Preview-Dataset"),
                   DatasetInfo("DeepScaleR-Preview: about 40k AIME, AMC, Omni-MATH and STILL problems for RL", None,
                               "hf:agentica-org/DeepScaleR-Preview-Dataset", "Luo et al. (2025), agentica-org", "MIT"))
register_benchmark("deepscaler", data_dir_loader("deepscaler", "rl/deepscaler-10k.parquet"), DatasetInfo(
    "the OXA paper's RLVR training set: 9,998 DeepScaleR-Preview problems in verl format (not on the hub; "
    "hf:agentica-org/DeepScaleR-Preview-Dataset is the full set)", 9998, "$OXA_DATA_DIR/rl/deepscaler-10k.parquet",
    "the OXA authors, from agentica-org/DeepScaleR-Preview-Dataset", "MIT (DeepScaleR)"))
