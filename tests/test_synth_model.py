"""The synthetic world's base model: cached, loadable with from_pretrained, and its PPL tells familiar
strategies from unseen ones (the premise OXA's selection builds on)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace
from statistics import mean, median

import pytest
import torch

from oxa.prompting import PromptFormat, encode_example
from oxa.synth.basemodel import QUICK_BASE, base_model_dir, build_base_model
from oxa.synth.corpus import pretrain_share, sample_problem
from oxa.synth.teacher import solve, strategies_for


def _records(n: int) -> list[dict]:
    """Held-out problems, each solved with its family's most frequent strategy and with its rarest one."""
    rng, out = random.Random(5), []
    for i in range(n):
        p = sample_problem(rng, i, prefix="m", held=True)
        names = strategies_for(p)
        for s in sorted(names, key=lambda s: pretrain_share(p.family, s))[:: len(names) - 1]:
            out.append({**p.to_record(), "id": f"{p.id}-{s}", "response": solve(p, s).response, "strategy": s,
                        "pretrain_share": pretrain_share(p.family, s)})
    return out


def _ppl(model, tok, record: dict) -> float:
    """exp(mean NLL) of the response tokens given the templated prompt, computed directly."""
    enc = encode_example(tok, record["query"], record["response"], PromptFormat())
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    targets = ids[0, 1:]
    nll = -logp[torch.arange(len(targets)), targets][enc.n_prompt - 1:]
    return math.exp(nll.mean().item())


def test_base_model_is_cached_by_config(synth_base_model):
    cache, path = synth_base_model
    assert path == base_model_dir(QUICK_BASE, cache) and (path / "oxa_synth_base.json").exists()
    weights = next(path.glob("*.safetensors"))
    mtime = weights.stat().st_mtime_ns
    start = time.perf_counter()
    assert build_base_model(QUICK_BASE, cache=cache, progress=False) == path
    assert time.perf_counter() - start < 1.0 and weights.stat().st_mtime_ns == mtime
    other = QUICK_BASE.model_copy(update={"seed": 1})
    assert base_model_dir(other, cache) != path  # every setting is part of the key
    assert not list(path.parent.glob(".*"))  # no temporary directory left behind


def test_base_model_ppl_separates_frequent_from_rare_strategies(synth_base_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path = synth_base_model
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    records = _records(24)
    ppl = [_ppl(model, tok, r) for r in records]
    frequent = [p for p, r in zip(ppl, records) if r["pretrain_share"] >= 0.5]
    rare = [p for p, r in zip(ppl, records) if r["pretrain_share"] < 0.1]
    assert len(frequent) == len(rare) == 24
    assert median(rare) > 1.3 * median(frequent), (median(frequent), median(rare))
    # on the same problem the rarely seen strategy is the less likely one nearly always
    pairs = list(zip(ppl[0::2], ppl[1::2]))  # (rarest, most frequent) per problem
    assert sum(r > f for r, f in pairs) >= 0.8 * len(pairs)

    # and `oxa score` (the project's scorer, through its CLI) agrees with the direct computation
    from typer.testing import CliRunner

    from oxa.cli import app
    from oxa.io import read_records, write_records

    write_records(tmp_path / "in.jsonl", records)
    result = CliRunner().invoke(app, ["score", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"),
                                      "--model", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    scored = read_records(tmp_path / "out.jsonl")
    assert [r["id"] for r in scored] == [r["id"] for r in records]
    assert [r["ppl"] for r in scored] == pytest.approx(ppl, rel=1e-4)


def test_oxa_synth_base_model_flag_reuses_the_cache(synth_base_model, tmp_path):
    from typer.testing import CliRunner

    from oxa.cli import app

    cache, path = synth_base_model
    weights = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "w"), "--world.n-queries", "2",
                                      "--world.benchmark-per-difficulty", "1", "--world.rl-prompts", "1", "--base-model",
                                      "--quick", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    assert str(path) in result.output.replace("\n", "")
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == weights  # reused, not trained or written again


def test_diagnostics_agree_with_direct_computations(synth_base_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oxa.synth.diagnose import BOXED, diagnostic_problems, greedy_accuracy, greedy_completions, role_accuracy

    _, path = synth_base_model
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    items = diagnostic_problems(6)
    roles = role_accuracy(model, tok, items)
    # over all roles: the argmax hits on the response tokens of the training encoding (its eos aside)
    hits = total = 0
    for p, response in items:
        enc = encode_example(tok, p.query, response, PromptFormat())
        with torch.no_grad():
            guess = model(input_ids=torch.tensor([enc.input_ids])).logits[0].argmax(-1)
        targets = torch.tensor(enc.input_ids[enc.n_prompt:-1])
        hits += (guess[enc.n_prompt - 1:-2] == targets).sum().item()
        total += len(targets)
    plain = {k: v for k, v in roles.items() if ":" not in k}
    assert (sum(h for h, _ in plain.values()), sum(n for _, n in plain.values())) == (hits, total)
    assert set(plain) <= {"format", "operand", "operand1", "result", "result1", "answer", "answer1"}

    # batched left-padded greedy decoding writes what one problem at a time does, and is scored by its boxed answer
    problems = [p for p, _ in items]
    batched = greedy_completions(model, tok, problems, max_new_tokens=48, batch_size=6)
    assert batched == [greedy_completions(model, tok, [p], max_new_tokens=48)[0] for p in problems]
    assert all(batched)
    fake = [replace(p, answer=int(m[-1]) if (m := BOXED.findall(t)) else p.answer + 1) for p, t in zip(problems, batched)]
    expected = {d: mean(bool(BOXED.findall(t)) for p, t in zip(problems, batched) if p.difficulty == d)
                for d in {p.difficulty for p in problems}}
    assert greedy_accuracy(model, tok, fake, max_new_tokens=48) == pytest.approx(expected)
