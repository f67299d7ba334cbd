"""The default base model, shipped with oxa: ``oxa demo`` starts from it instead of pre-training.

Pre-training the world's base model is most of a cold demo's time (3-6 minutes on 2 cores), the same
work on every machine. ``src/oxa/synth/base/`` holds the model built from the default
:class:`~oxa.synth.basemodel.BaseModelConfig` (weights, tokenizer, and ``oxa_synth_base.json`` with the
config and world version it was built from); :func:`build_base_model` copies it into the cache when a
requested config has the same key, and pre-trains otherwise. Rebuilt and re-shipped with::

    oxa synth /tmp/world --base-model --no-shipped --cache /tmp/rebuild --ship-to src/oxa/synth/base

A rebuild is not bit-identical everywhere: float sums depend on the CPU's thread count and kernels, so
weights agree to a tolerance (:func:`weight_difference`), not bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

SHIPPED = Path(__file__).parent / "base"
INFO = "oxa_synth_base.json"


def shipped_key(directory: Path = SHIPPED) -> str | None:
    """The cache key of the model in ``directory`` (None when there is none)."""
    from oxa.synth.basemodel import config_key

    info = directory / INFO
    if not info.exists():
        return None
    data = json.loads(info.read_text(encoding="utf-8"))
    return config_key(data["config"], data["world_version"])


def shipped_model(config) -> Path | None:
    """The shipped model directory when it was built from ``config`` (same key), else None."""
    return SHIPPED if (SHIPPED / "config.json").exists() and shipped_key() == config.key() else None


def ship(model_dir: Path, dest: Path) -> Path:
    """Replace ``dest`` with a copy of the built model in ``model_dir``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
    tmp.chmod(0o755)  # package data: readable by everyone (the cache's build directory is private)
    for f in tmp.iterdir():
        f.chmod(0o644)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def weight_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two models' weights (the same tensors are required)."""
    from safetensors.torch import load_file

    wa, wb = load_file(Path(a) / "model.safetensors"), load_file(Path(b) / "model.safetensors")
    if wa.keys() != wb.keys():
        raise ValueError(f"{a} and {b} hold different tensors")
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
