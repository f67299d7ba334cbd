import json
import math
import random

import pytest
import torch
import yaml
from typer.testing import CliRunner

from oxa.cli import app
from oxa.errors import OxaError, RecordError
from oxa.io import read_records, write_records
from oxa.models import load_model, load_tokenizer
from oxa.prompting import PAPER_SUFFIX, PromptFormat
from oxa.records import Fields
from oxa.scoring import ScoreConfig, Scorer, pack_batches, score_file, score_records


def make_records(n: int, seed: int = 0) -> list[dict]:
    """Arithmetic problems whose worked responses have long-tailed lengths (1 to ~40 lines)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        lines = [f"{a + k} + {b} = {a + b + k}" for k in range(min(40, int(rng.paretovariate(1.2))))]
        response = "<think>\n" + "\n".join(lines) + "\n</think>\n\\boxed{" + str(a + b) + "}"
        records.append({"id": f"r{i}", "query": f"What is {a} + {b}?", "response": response, "extra": i})
    return records


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core runner extra OpenMP threads stall."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def reference_ppl(model, tok, query: str, response: str, template: bool) -> tuple[float, int]:
    """Independent PPL: tokenize by hand, one sequence at a time, full-vocabulary log_softmax."""
    if template:
        prompt = tok.apply_chat_template([{"role": "user", "content": query + PAPER_SUFFIX}], tokenize=False,
                                         add_generation_prompt=True)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    else:
        prompt_ids = tok(query, add_special_tokens=False)["input_ids"] if query else []
        response_ids = tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits.float().log_softmax(-1)[0]
    first = max(len(prompt_ids), 1)
    token_lp = [logprobs[t - 1, ids[0, t]].item() for t in range(first, ids.shape[1])]
    return math.exp(-sum(token_lp) / len(token_lp)), len(token_lp)


@pytest.mark.parametrize("template", [True, False])
def test_ppl_matches_full_logits_in_mixed_length_batches(model, tok, template):
    records = make_records(24)
    if not template:
        records[0]["query"] = ""  # first response token has no context: not scored
    fmt = PromptFormat(template=template, suffix=PAPER_SUFFIX if template else "")
    budget = 1200
    out = score_records(records, model, tok, fmt=fmt, token_budget=budget, sort_window=16, progress=False)

    lengths = [len(tok(r["response"])["input_ids"]) for r in records[:16]]
    assert any(len({lengths[i] for i in b}) > 1 for b in pack_batches(lengths, budget)), "no mixed batch"
    assert [r["id"] for r in out] == [r["id"] for r in records] and out[5]["extra"] == 5
    for rec, got in zip(records, out):
        ppl, n = reference_ppl(model, tok, rec["query"], rec["response"], template)
        assert got["n_tokens"] == n and got["truncated"] is False
        assert abs(got["ppl"] - ppl) / ppl <= 1e-5


def test_bf16_model_keeps_fp32_resolution(model, tok):
    records = make_records(12, seed=1)
    ref = score_records(records, model, tok, progress=False)
    half = score_records(records, load_model_bf16(model), tok, progress=False)
    for r, h in zip(ref, half):
        assert abs(h["ppl"] - r["ppl"]) / r["ppl"] < 0.05
    # a mean NLL rounded to bf16 (as in the reference code) takes few distinct values; ours does not
    nll = [math.log(h["ppl"]) for h in half]
    assert sum(torch.tensor(x).bfloat16().item() != x for x in nll) == len(nll)


def load_model_bf16(model):
    import copy

    return copy.deepcopy(model).to(torch.bfloat16)


def test_empty_response_and_truncation(model, tok):
    records = [
        {"query": "What is 1 + 1?", "response": ""},
        {"query": "What is 1 + 1?", "response": "<think>\n1 + 1 = 2\n</think>\n\\boxed{2}" * 3},
        {"query": "What is 2 + 2? " * 30, "response": "\\boxed{4}"},
    ]
    prompt = tok.apply_chat_template([{"role": "user", "content": records[1]["query"] + PAPER_SUFFIX}],
                                     tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    max_len = n_prompt + 5
    for template in (True, False):
        fmt = PromptFormat(template=template)
        out = score_records(records, model, tok, fmt=fmt, max_len=max_len, progress=False)
        assert math.isnan(out[0]["ppl"]) and out[0]["n_tokens"] == 0 and out[0]["truncated"] is False
    out = score_records(records, model, tok, max_len=max_len, progress=False)
    assert out[1]["truncated"] is True and out[1]["n_tokens"] == 5 and math.isfinite(out[1]["ppl"])
    assert out[2]["truncated"] is True and out[2]["n_tokens"] == 0 and math.isnan(out[2]["ppl"])


def test_pack_batches_respects_budget_longest_first():
    rng = random.Random(3)
    lengths = [rng.randint(1, 300) for _ in range(200)] + [1000]
    batches = pack_batches(lengths, 512)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [200]  # longer than the budget: alone, and first
    for b in batches[1:]:
        assert len(b) * max(lengths[i] for i in b) <= 512
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) * width - sum(lengths[i] for i in b) <= 0.1 * len(b) * width  # the padding cap


def test_pack_batches_closes_a_batch_at_the_padding_cap():
    # budget room for 4 of length 100; a 4th of length 10 would make 1 - 310/400 = 22.5% padding
    assert pack_batches([100, 100, 100, 10, 10], 400, max_padding=0.2) == [[0, 1, 2], [3, 4]]
    assert pack_batches([100, 100, 100, 10, 10], 400, max_padding=0.25) == [[0, 1, 2, 3], [4]]
    assert pack_batches([100, 100, 100, 10, 10], 400, max_padding=1.0) == [[0, 1, 2, 3], [4]]


def test_missing_field_names_record_and_field(model, tok):
    with pytest.raises(RecordError, match=r"data.jsonl: record 2: field 'response' is missing"):
        score_records([{"query": "a", "response": "b"}, {"query": "a"}], model, tok, progress=False,
                      source="data.jsonl")


def test_unsupported_head_is_refused(model):
    class Scaled(torch.nn.Module):  # a forward whose logits are not lm_head(hidden)
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, **kw):
            out = self.inner(**kw)
            out.logits = out.logits * 2
            return out

        def get_decoder(self):
            return self.inner.get_decoder()

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

    with pytest.raises(OxaError, match="not supported"):
        Scorer(Scaled(model))


def run_config(tmp_path, model_dir, **kw) -> ScoreConfig:
    return ScoreConfig(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", model=str(model_dir),
                       token_budget=600, sort_window=8, progress=False, **kw)


def test_resume_after_crash_scores_each_record_once_with_identical_values(tmp_path, tiny_model_dir, monkeypatch):
    records = make_records(40, seed=2)
    records[0]["response"] = ""  # no PPL: NaN when scored, null when resumed from the partial file
    write_records(tmp_path / "in.jsonl", records)
    full = score_file(run_config(tmp_path, tiny_model_dir))
    assert full.records == full.scored == 40 and full.nan == 1
    expected = read_records(tmp_path / "out.jsonl")
    (tmp_path / "out.jsonl").unlink()

    calls = {"n": 0}
    real = Scorer.score_batch

    def crash_after_three(self, batch):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Scorer, "score_batch", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        score_file(run_config(tmp_path, tiny_model_dir))
    assert not (tmp_path / "out.jsonl").exists()
    done = len((tmp_path / "out.jsonl.partial").read_text().splitlines())
    assert 0 < done < 40

    with pytest.raises(OxaError, match="differs in: max_len"):
        score_file(run_config(tmp_path, tiny_model_dir, max_len=64))

    monkeypatch.setattr(Scorer, "score_batch", real)
    resumed = score_file(run_config(tmp_path, tiny_model_dir))
    assert resumed.records == 40 and resumed.scored == 40 - done and resumed.nan == 1
    assert read_records(tmp_path / "out.jsonl") == expected  # same values to the last bit, same order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_cli_with_config_file_flags_override_and_skip_bad(tmp_path, tiny_model_dir):
    rows = [{"question": r["query"], "solution": r["response"]} for r in make_records(6, seed=4)]
    with open(tmp_path / "in.jsonl", "w") as f:
        for r in rows[:3]:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"question": "no solution"}) + "\n")
        for r in rows[3:]:
            f.write(json.dumps(r) + "\n")
    config = {"input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "ignored.jsonl"),
              "model": str(tiny_model_dir), "fields": {"query": "question", "response": "solution"},
              "prompt": {"template": False, "suffix": ""}, "max_len": 40}
    (tmp_path / "score.yaml").write_text(yaml.safe_dump(config))

    result = CliRunner().invoke(app, ["score", "--config", str(tmp_path / "score.yaml"), "-o",
                                      str(tmp_path / "out.parquet"), "--skip-bad", "--no-progress"])
    assert result.exit_code == 0, result.output
    out = read_records(tmp_path / "out.parquet")
    assert [r["question"] for r in out] == [r["question"] for r in rows]
    assert not (tmp_path / "ignored.jsonl").exists()
    model, tok = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    expect = score_records([{"query": r["question"], "response": r["solution"]} for r in rows], model, tok,
                           fmt=PromptFormat(template=False, suffix=""), max_len=40, progress=False)
    assert [r["ppl"] for r in out] == pytest.approx([e["ppl"] for e in expect], rel=1e-6)
    assert [r["truncated"] for r in out] == [e["truncated"] for e in expect]

    bad = CliRunner().invoke(app, ["score", "--config", str(tmp_path / "score.yaml")])
    assert bad.exit_code != 0 and "malformed record" in str(bad.exception)


def test_custom_fields_in_library_api(model, tok):
    records = [{"q": "What is 3 + 4?", "a": "\\boxed{7}"}]
    out = score_records(records, model, tok, fields=Fields(query="q", response="a"), progress=False)
    ppl, n = reference_ppl(model, tok, "What is 3 + 4?", "\\boxed{7}", True)
    assert out[0]["n_tokens"] == n and out[0]["ppl"] == pytest.approx(ppl, rel=1e-5)
