"""`oxa train` end to end on a tiny Qwen2: paper presets, resume, data handling, export, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from oxa.errors import OxaError, RecordError
from oxa.io import read_records, write_records
from oxa.training import TrainConfig, train
from oxa.training.data import Collator

ROOT = Path(__file__).resolve().parents[1]


def sums(n: int, offset: int = 0, wrong: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        a, b = 2 + (i + offset) % 37, 5 + (3 * i + offset) % 41
        c = a + b + (1 if wrong else 0)
        out.append({"id": f"{offset}-{i}", "query": f"What is {a} + {b}?",
                    "response": f"<think>{a} + {b} = {c}</think> \\boxed{{{c}}}"})
    return out


@pytest.fixture()
def data(tmp_path):
    write_records(tmp_path / "ce.jsonl", sums(12))
    write_records(tmp_path / "ul.jsonl", sums(6, offset=100, wrong=True))
    return tmp_path


def small(tmp_path, model_dir, **overrides) -> TrainConfig:
    settings = dict(model=str(model_dir), output_dir=tmp_path / "out", ce_data=tmp_path / "ce.jsonl",
                    ul_data=tmp_path / "ul.jsonl", prompt={"suffix": ""}, ce_per_step=2, ul_per_step=2,
                    micro_batch_size=2, learning_rate=1e-3, max_steps=2, seed=1)
    return TrainConfig(**{**settings, **overrides})


def params(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(path) / "model.safetensors")


@pytest.mark.parametrize("preset", ["qwen2.5-math-1.5b", "qwen2.5-math-7b"])
def test_paper_preset_runs_on_a_tiny_qwen2(preset, tmp_path, tiny_model_dir):
    settings = yaml.safe_load((ROOT / "configs" / "paper" / f"{preset}.yaml").read_text())
    assert settings["ce_per_step"] == settings["ul_per_step"] == 128 and settings["alpha"] == 1e-4
    assert settings["model_overrides"] == {"rope_theta": 1e6, "max_position_embeddings": 40000}
    write_records(tmp_path / "ce.jsonl", sums(130))
    write_records(tmp_path / "ul.jsonl", sums(64, offset=7, wrong=True))
    settings.update(model=str(tiny_model_dir), output_dir=str(tmp_path / "out"), ce_data=str(tmp_path / "ce.jsonl"),
                    ul_data=str(tmp_path / "ul.jsonl"), deepspeed=None, bf16=False, max_steps=2, micro_batch_size=64)
    out = train(TrainConfig.model_validate(settings))

    saved = json.loads((out / "config.json").read_text())
    assert saved["rope_parameters"]["rope_theta"] == 1e6 and saved["max_position_embeddings"] == 40000
    summary = json.loads((out / "oxa_train.json").read_text())
    assert summary["composer"]["ce_per_step"] == 128 and summary["composer"]["ul_per_step"] == 128
    assert summary["composer"]["grad_accum"] == 4  # 256 rows / 64 per micro-batch on one process
    logged = [h for h in summary["log_history"] if "loss" in h]
    assert len(logged) == 2
    for key in ("ce_loss", "ul_loss", "weighted_ul_loss", "entropy_ce", "entropy_ul", "tokens_per_second", "learning_rate"):
        assert all(key in h for h in logged), key
    assert abs(logged[0]["loss"] - (logged[0]["ce_loss"] + logged[0]["weighted_ul_loss"])) < 1e-3
    assert list((tmp_path / "out" / "runs").rglob("events.out.tfevents*"))  # TensorBoard got the logs
    from transformers import AutoTokenizer

    prompt = AutoTokenizer.from_pretrained(out).apply_chat_template([{"role": "user", "content": "q"}], tokenize=False)
    assert "system" not in prompt


def test_resume_mid_epoch_gives_the_same_model(data, tiny_model_dir, tmp_path):
    seen: dict[str, list] = {"a": [], "b": []}
    original = Collator.__call__
    target = "a"

    def recording(self, items):
        seen[target].append([(row.kind, row.index) for _, row in items])
        return original(self, items)

    Collator.__call__ = recording
    try:
        full = train(small(data, tiny_model_dir, output_dir=tmp_path / "a", max_steps=4, save_steps=2))
        (tmp_path / "b").mkdir()
        shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
        target = "b"
        resumed = train(small(data, tiny_model_dir, output_dir=tmp_path / "b", max_steps=4, save_steps=2,
                              resume_from_checkpoint="latest"))
    finally:
        Collator.__call__ = original
    per_step = len(seen["a"]) // 4
    assert seen["b"] == seen["a"][2 * per_step:]  # the same next batches, mid-epoch (6 steps per epoch)
    pa, pb = params(full), params(resumed)
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in pa)


def one_sgd_step(model_dir, ce: list[dict], ul: list[dict], *, alpha: float, lr: float, gce=None) -> dict:
    """Parameters after one plain SGD step on the whole batch, written from the formulas with full float64 logits:
    mean over sequences of the mean token loss, CE (or generalized CE with stop-gradient coefficients) on ``ce``
    plus alpha times UL = -log(1 - p) on ``ul``."""
    from transformers import AutoModelForCausalLM

    from oxa.models import load_tokenizer
    from oxa.prompting import PromptFormat, encode_example

    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    def token_logp(record):
        enc = encode_example(tok, record["query"], record["response"], PromptFormat(suffix=""))
        ids = torch.tensor([enc.input_ids])
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)[enc.n_prompt - 1:]
        return logp, ids[0, enc.n_prompt:]

    ce_terms = []
    for record in ce:
        logp, targets = token_logp(record)
        if gce is None:
            ce_terms.append(-logp.gather(1, targets[:, None]).mean())
            continue
        with torch.no_grad():  # c_y = p_y^(1 - (1 - p_y)^beta); c_j = lambda_(top|tail) * p_j elsewhere
            p = logp.exp()
            p_y = p.gather(1, targets[:, None])
            top = torch.zeros_like(p, dtype=torch.bool).scatter_(1, logp.topk(gce.top_k, -1).indices, True)
            c = torch.where(top, gce.lambda_top, gce.lambda_tail) * p
            c.scatter_(1, targets[:, None], p_y ** (1 - (1 - p_y) ** gce.beta))
        ce_terms.append(-(c * logp).sum(-1).mean())
    loss = torch.stack(ce_terms).mean()
    if ul:
        ul_terms = [-torch.log1p(-lp.gather(1, t[:, None]).exp()).mean() for lp, t in map(token_logp, ul)]
        loss = loss + alpha * torch.stack(ul_terms).mean()
    loss.backward()
    return {name: (p - lr * p.grad).detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("method,settings", [
    ("sft", {"ul_data": None}),
    ("oxa-mle", {"alpha": 0.5}),  # given UL data and alpha, which it must ignore
    ("oxa-full", {"alpha": 0.5}),
    ("dp-ce", {"gce": {"beta": 0.0, "lambda_top": 0.0, "lambda_tail": 0.0}}),  # plain CE
    ("dp-ce", {"gce": {"beta": -0.25, "lambda_top": 0.05, "lambda_tail": -0.1, "top_k": 20}}),
])
def test_one_step_of_each_method_equals_the_formula(method, settings, data, tiny_model_dir, tmp_path):
    ce, ul = read_records(data / "ce.jsonl")[:4], read_records(data / "ul.jsonl")[:2]
    write_records(data / "ce4.jsonl", ce)
    write_records(data / "ul2.jsonl", ul)
    config = small(data, tiny_model_dir, method=method, **{
        "ce_data": data / "ce4.jsonl", "ul_data": data / "ul2.jsonl", "ce_per_step": 4, "ul_per_step": 2, "max_steps": 1,
        "learning_rate": 0.5, "lr_scheduler_type": "constant", "warmup_ratio": 0.0, "max_grad_norm": 0.0,
        "trainer_args": {"optim": "sgd"}, **settings})
    trained = params(train(config))
    gce = config.generalized_ce()
    expected = one_sgd_step(tiny_model_dir, ce, ul if method == "oxa-full" else [], alpha=config.alpha, lr=0.5,
                            gce=None if gce is None or gce.is_plain_ce else gce)
    for name, value in expected.items():
        assert (trained[name] - value).abs().max().item() < 2e-5, name
    start = params(tiny_model_dir)  # a step a thousand times the tolerance: the methods differ by far more than it
    assert max((value - start[name]).abs().max().item() for name, value in expected.items()) > 2e-2


def test_bf16_mixed_precision_on_cpu_is_close_to_fp32(data, tiny_model_dir, tmp_path):
    """The Trainer's bf16 (autocast around fp32 weights): the first step's loss within bf16 rounding of fp32's."""
    common = dict(max_steps=1, warmup_ratio=0.0, trainer_args={"use_cpu": True})
    fp32 = train(small(data, tiny_model_dir, output_dir=tmp_path / "fp32", **common))
    bf16 = train(small(data, tiny_model_dir, output_dir=tmp_path / "bf16", bf16=True, **common))
    logged = [next(h for h in json.loads((out / "oxa_train.json").read_text())["log_history"] if "loss" in h)
              for out in (fp32, bf16)]
    for key in ("loss", "ce_loss", "ul_loss"):
        assert abs(logged[1][key] - logged[0][key]) < 1e-2 * abs(logged[0][key]), key
    trained, start = params(bf16), params(tiny_model_dir)
    assert all(trained[k].dtype == torch.float32 and torch.isfinite(trained[k]).all() for k in trained)
    assert any(not torch.equal(trained[k], start[k]) for k in start)


def test_cutoff_drop_or_truncate_is_counted(tmp_path, tiny_tokenizer):
    from oxa.prompting import PromptFormat
    from oxa.training.data import encode_records

    records = sums(3) + [{"query": "long", "response": "1 2 3 4 5 6 7 8 9 " * 20}]
    kwargs = dict(fmt=PromptFormat(suffix=""), fields=TrainConfig.model_fields["fields"].default, cutoff_len=60,
                  source="x.jsonl")
    ex, stats = encode_records(records, tiny_tokenizer, policy="drop", **kwargs)
    assert (stats.kept, stats.dropped_too_long, stats.truncated) == (3, 1, 0) and len(ex) == 3
    ex, stats = encode_records(records, tiny_tokenizer, policy="truncate", **kwargs)
    assert (stats.kept, stats.dropped_too_long, stats.truncated) == (4, 0, 1) and len(ex[3].input_ids) == 60
    with pytest.raises(RecordError, match=r"x.jsonl: record 2: field 'response' is missing"):
        encode_records([sums(1)[0], {"query": "q"}], tiny_tokenizer, policy="drop", **kwargs)
    _, stats = encode_records([{"query": "q"}], tiny_tokenizer, policy="drop", skip_bad=True, **kwargs)
    assert stats.skipped_bad == 1


def test_one_file_with_loss_type_and_bad_values(tmp_path):
    from oxa.training.data import read_split

    write_records(tmp_path / "mixed.jsonl", [{**r, "loss_type": t} for r, t in zip(sums(3), ["ce", "UL", "ce"])])
    ce, ul = read_split(ce_data=None, ul_data=None, data=tmp_path / "mixed.jsonl")
    assert len(ce) == 2 and len(ul) == 1
    write_records(tmp_path / "bad.jsonl", [{**sums(1)[0], "loss_type": "maybe"}])
    with pytest.raises(RecordError, match=r"bad.jsonl: record 1: field 'loss_type' must be 'ce' or 'ul'"):
        read_split(ce_data=None, ul_data=None, data=tmp_path / "bad.jsonl")
    with pytest.raises(ValueError):
        TrainConfig(model="m", output_dir=tmp_path, method="sft", ul_data=tmp_path / "x")


def test_cli_trains_from_config_with_flag_overrides_and_exports(data, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from oxa.cli import app

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(tiny_model_dir), "output_dir": str(tmp_path / "cli"),
                                   "ce_data": str(data / "ce.jsonl"), "ul_data": str(data / "ul.jsonl"),
                                   "prompt": {"suffix": " Think."}, "ce_per_step": 4, "ul_per_step": 2,
                                   "max_steps": 5}))
    runner = CliRunner()
    done = runner.invoke(app, ["train", "--config", str(cfg), "--max-steps", "1", "--alpha", "0.01"])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "cli" / "oxa_train.json").read_text())
    assert summary["global_steps"] == 1 and summary["config"]["alpha"] == 0.01
    assert summary["config"]["ce_per_step"] == 4  # from the file

    done = runner.invoke(app, ["train", "--config", str(cfg), "--export", "llamafactory",
                               "--export-path", str(tmp_path / "lf.json")])
    assert done.exit_code == 0, done.output
    rows = json.loads((tmp_path / "lf.json").read_text())
    assert [r["loss_type"] for r in rows] == ["ce"] * 12 + ["ul"] * 6
    assert rows[0]["instruction"] == sums(1)[0]["query"] + " Think." and rows[0]["output"] == sums(1)[0]["response"]
    done = runner.invoke(app, ["train", "--config", str(cfg), "--export", "trl", "--export-path", str(tmp_path / "t.jsonl"),
                               "--method", "sft"])
    assert done.exit_code == 0, done.output
    rows = read_records(tmp_path / "t.jsonl")
    assert len(rows) == 12 and rows[0]["prompt"][0] == {"role": "user", "content": sums(1)[0]["query"] + " Think."}
    assert rows[0]["completion"][0]["content"] == sums(1)[0]["response"]


def test_engine_settings_that_cannot_work_are_refused_before_training(data, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="give one of them"):
        small(data, tiny_model_dir, deepspeed=ROOT / "configs" / "deepspeed" / "zero3.json",
              fsdp=ROOT / "configs" / "fsdp" / "fsdp2.json")
    with pytest.raises(ValueError, match="trainer_args.fsdp_config: use the setting `fsdp` instead"):
        small(data, tiny_model_dir, trainer_args={"fsdp_config": {"version": 2}})
    with pytest.raises(OxaError, match="^training settings refused: .*no-such-optimizer") as refused:
        train(small(data, tiny_model_dir, output_dir=tmp_path / "x", trainer_args={"optim": "no-such-optimizer"}))
    assert "\n" not in str(refused.value) and not (tmp_path / "x").exists()


def test_model_override_typo_is_a_clear_error(data, tiny_model_dir):
    with pytest.raises(OxaError, match="has no setting 'rope_thetta'"):
        train(small(data, tiny_model_dir, model_overrides={"rope_thetta": 1.0}))
