"""`oxa train` sharded over two CPU processes (torchrun, gloo) by FSDP2, FSDP1, DeepSpeed ZeRO-2 and ZeRO-3 with
the shipped configs: after three SGD steps (with gradient clipping) the parameters equal a one-process run's,
max abs diff < 1e-6 (measured: 1.2e-7 for FSDP2, ZeRO-2 and ZeRO-3, 1.5e-8 for FSDP1). Under FSDP and ZeRO-3
the output projection is sharded outside its forward pass (checked), so the fused loss must run inside it.
The tiny model ties its embeddings, as Qwen2.5-Math-1.5B does.

accelerate turns FSDP and DeepSpeed on only beside an accelerator (with ``ACCELERATE_USE_CPU`` it silently
falls back to DDP); :func:`allow_engines_on_cpu` lets the processes of this CPU-only test run them over gloo.
torch's FSDP1 crashes (SIGSEGV) gathering a full state dict on CPU, so the FSDP1 run checkpoints sharded and
the test reads its parameters gathered by ``summon_full_params`` instead of the saved model.

This file is also the worker that torchrun starts (``python tests/test_training_sharded.py WORKDIR ENGINE``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-6
SHARDED = {"fsdp2", "fsdp1", "zero3"}  # engines that shard the parameters themselves (ZeRO-2 shards gradients)


def config(work: Path, engine: str | None):
    from oxa.training import TrainConfig

    engine_setting = {}
    if engine in ("fsdp2", "fsdp1"):
        engine_setting = {"fsdp": work / "fsdp1.json" if engine == "fsdp1" else ROOT / "configs" / "fsdp" / "fsdp2.json"}
    elif engine:
        engine_setting = {"deepspeed": ROOT / "configs" / "deepspeed" / f"{engine}.json"}
    return TrainConfig(
        model=str(work / "model"), output_dir=work / (engine or "single"), method="oxa-full",
        ce_data=work / "ce.jsonl", ul_data=work / "ul.jsonl", prompt={"suffix": ""},
        ce_per_step=4, ul_per_step=2, micro_batch_size=2, alpha=0.5, learning_rate=0.5,
        lr_scheduler_type="constant", warmup_ratio=0.0, max_grad_norm=1.0, max_steps=3,
        trainer_args={"optim": "sgd"}, seed=5, **engine_setting,
    )


def records(n: int, offset: int, wrong: bool) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 3 + i + offset, 11 + 2 * i
        answer = a + b + (1 if wrong else 0)
        rows.append({"query": f"What is {a} + {b}?", "response": f"<think>{a} + {b} = {answer}</think> \\boxed{{{answer}}}"})
    return rows


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory, tiny_model_dir) -> Path:
    """The data, the model and the reference: the same run in one process, no engine."""
    from oxa.io import write_records
    from oxa.training import train

    work = tmp_path_factory.mktemp("sharded")
    shutil.copytree(tiny_model_dir, work / "model")
    write_records(work / "ce.jsonl", records(12, 0, wrong=False))
    write_records(work / "ul.jsonl", records(6, 50, wrong=True))
    # the shipped FSDP settings with the older engine (deprecated in transformers 5); torch's FSDP1 cannot
    # broadcast rank 0's weights on CPU (sync_module_states) -- each rank loads them -- nor gather a full
    # state dict (see the module docstring)
    settings = json.loads((ROOT / "configs" / "fsdp" / "fsdp2.json").read_text())
    settings.update(version=1, reshard_after_forward="FULL_SHARD", sync_module_states=False,
                    state_dict_type="SHARDED_STATE_DICT")
    (work / "fsdp1.json").write_text(json.dumps(settings))
    train(config(work, None))
    return work


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fsdp2", "fsdp1", "zero2", "zero3"])
def test_two_sharded_processes_match_one_process(engine, single_process_run):
    from safetensors.torch import load_file

    if engine.startswith("zero"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
    work = single_process_run
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, str(work), engine]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    out = work / engine
    summary = json.loads((out / "oxa_train.json").read_text())
    assert summary["global_steps"] == 3 and summary["composer"]["world_size"] == 2
    single, start = load_file(work / "single" / "model.safetensors"), load_file(work / "model" / "model.safetensors")
    seen = json.loads((out / "output_layer.json").read_text())
    full = start["model.embed_tokens.weight"].numel()  # tied: the output projection is the embedding
    assert seen["inside_forward"] == full  # the loss saw the whole weight ...
    assert seen["outside_forward"] < full if engine in SHARDED else seen["outside_forward"] == full  # ... held sharded

    sharded = torch.load(out / "full_params.pt") if engine == "fsdp1" else load_file(out / "model.safetensors")
    if "lm_head.weight" in sharded:  # FSDP2's and ZeRO-3's full state dicts also list the tied output projection
        assert torch.equal(sharded.pop("lm_head.weight"), sharded["model.embed_tokens.weight"])
    assert single.keys() == sharded.keys()
    for name in single:
        assert sharded[name].dtype == torch.float32
        assert not torch.equal(single[name], start[name]), name  # training moved every parameter
        assert (single[name] - sharded[name]).abs().max().item() < TOLERANCE, name


def allow_engines_on_cpu() -> None:
    """Let accelerate run FSDP and DeepSpeed in CPU-only processes, over gloo (it refuses both without an accelerator)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    prepare_backend, init_state, set_device = PartialState._prepare_backend, AcceleratorState.__init__, PartialState.set_device

    def gloo_without_accelerator(self, cpu=False, sagemaker_dp=False, backend=None):
        found, kind = prepare_backend(self, cpu, sagemaker_dp, backend)
        return (found, kind) if found else ("gloo", DistributedType.MULTI_CPU)

    def fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
        init_state(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    def plain_cpu_device(self):  # FSDP1 compares "cpu" with accelerate's "cpu:0"
        set_device(self)
        if self.device.type == "cpu":
            self.device = torch.device("cpu")

    PartialState._prepare_backend, AcceleratorState.__init__ = gloo_without_accelerator, fsdp_on_cpu
    PartialState.set_device = plain_cpu_device


def worker(work: Path, engine: str) -> None:
    """Train under ``engine``; record the output layer's weight size inside and outside its forward pass."""
    from transformers import TrainerCallback

    from oxa.training import train
    from oxa.training.loss_head import LossHead

    rank, out = int(os.environ["RANK"]), work / engine
    seen: dict = {}
    loss_forward = LossHead._forward

    def recording_forward(self, hidden):
        if self._batch is not None:
            seen["head"], seen["inside_forward"] = self, self.layer.weight.numel()
        return loss_forward(self, hidden)

    LossHead._forward = recording_forward

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            weight = seen["head"].layer.weight
            seen["outside_forward"] = (weight.to_local() if hasattr(weight, "to_local") else weight).numel()

        def on_train_end(self, args, state, control, model=None, **kw):
            if engine == "fsdp1":
                from torch.distributed.fsdp import FullyShardedDataParallel

                with FullyShardedDataParallel.summon_full_params(model, writeback=False):
                    params = {k.replace("_fsdp_wrapped_module.", ""): v.detach().clone() for k, v in model.named_parameters()}
                if rank == 0:
                    out.mkdir(parents=True, exist_ok=True)
                    torch.save(params, out / "full_params.pt")

    allow_engines_on_cpu()
    try:
        train(config(work, engine), callbacks=[Record()])
    finally:
        if torch.distributed.is_initialized():  # ZeRO-3 aborts at exit without this
            torch.distributed.destroy_process_group()
    if rank == 0:
        (out / "output_layer.json").write_text(json.dumps({k: v for k, v in seen.items() if k != "head"}))


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2])
