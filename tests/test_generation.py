"""Sampling: the math of one step, record shape, determinism, stop strings, entropy, resumption, CLI."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from oxa.generation import (GenerateConfig, TransformersBackend, generate_file, generate_records, sample_seed)
from oxa.generation.sampling import SamplingParams, draw, entropy_of_logits, nucleus, sampling_distribution
from oxa.generation.vllm_backend import from_vllm
from oxa.io import read_records, write_records
from oxa.prompting import PromptFormat, encode_prompt

QUERIES = [
    {"id": "a", "query": "What is 2 + 3?", "answer": "5", "ppl": 2.0, "correct": True},
    {"id": "b", "query": "Natalia sold clips to 48 of her friends in April. How many?", "answer": "48"},
    {"id": "c", "query": "Compute 7 * 6.", "answer": "42"},
]


@pytest.fixture(scope="module")
def model_and_tok(tiny_model_dir):
    from oxa.models import load_model, load_tokenizer

    torch.set_num_threads(1)
    return load_model(tiny_model_dir), load_tokenizer(tiny_model_dir, padding_side="left")


def test_sampling_distribution_matches_a_direct_nucleus_computation():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    got = sampling_distribution(logits, 0.7, 0.8)[0]
    p = torch.softmax(logits[0] / 0.7, -1).tolist()
    order = sorted(range(5), key=lambda i: -p[i])
    kept, mass = [], 0.0
    for i in order:  # smallest prefix of the most likely tokens whose mass reaches top_p
        kept.append(i)
        mass += p[i]
        if mass >= 0.8:
            break
    want = [p[i] / mass if i in kept else 0.0 for i in range(5)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    assert sampling_distribution(logits, 0.0, 0.95)[0].tolist() == [1.0, 0, 0, 0, 0]  # greedy
    assert sampling_distribution(logits, 1.0, 1.0)[0].tolist() == pytest.approx(torch.softmax(logits[0], -1).tolist())


@pytest.mark.parametrize("spread", [1.0, 20.0])
def test_nucleus_over_a_large_vocabulary_equals_the_full_sort(spread):
    """Peaked rows stop at the first top-k candidates, flat rows (nucleus > 1024 tokens) widen to the vocabulary."""
    logits = torch.randn(3, 5000, generator=torch.Generator().manual_seed(0)) * spread
    got = sampling_distribution(logits, 0.9, 0.95)
    p = torch.softmax(logits / 0.9, -1)
    sp, order = p.sort(-1, descending=True)
    keep = (sp.cumsum(-1) - sp) < 0.95
    want = torch.zeros_like(p).scatter(-1, order, sp * keep)
    torch.testing.assert_close(got, want / want.sum(-1, keepdim=True))
    assert ((got > 0).sum(-1) > 1024).all() == (spread == 1.0)


def test_draw_follows_the_distribution_and_each_stream():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2]).repeat(4000, 1)
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    counts = torch.bincount(draw(probs, gens), minlength=4).tolist()
    assert counts[1] == 0
    for c, p in zip(counts, [0.5, 0.0, 0.3, 0.2]):
        assert abs(c / 4000 - p) < 0.03
    # a row's draw depends only on its own generator, not on its batch neighbours
    alone = draw(probs[:1], [torch.Generator().manual_seed(7)])
    together = draw(probs[:3], [torch.Generator().manual_seed(s) for s in (3, 7, 9)])
    assert alone[0] == together[1]


@pytest.mark.parametrize("spread", [1.0, 4.0, 20.0])
def test_drawing_from_the_nucleus_candidates_picks_the_dense_draws_token(spread):
    logits = torch.randn(64, 3000, generator=torch.Generator().manual_seed(1)) * spread
    probs, ids = nucleus(logits, 0.7, 0.9)
    assert probs.shape[1] < 3000 or spread == 1.0  # peaked rows never touch the whole vocabulary
    dense = torch.zeros_like(logits)
    for row in range(64):  # scattered by hand, not through sampling_distribution
        for p, i in zip(probs[row].tolist(), ids[row].tolist()):
            dense[row, i] = p
    seeds = [torch.Generator().manual_seed(s) for s in range(64)], [torch.Generator().manual_seed(s) for s in range(64)]
    assert draw(probs, seeds[0], ids).tolist() == draw(dense, seeds[1]).tolist()


def test_entropy_of_logits_is_minus_sum_p_log_p():
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0]])
    h = entropy_of_logits(logits).tolist()
    assert h[0] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)
    assert h[1] == pytest.approx(math.log(2), abs=1e-6)


def test_generate_records_shape_and_batch_independence(model_and_tok):
    model, tok = model_and_tok
    kw = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=5, progress=False)
    out = generate_records(QUERIES, model, tok, batch_size=4, **kw)
    assert len(out) == 9
    assert [(r["query_id"], r["sample"]) for r in out] == [(q, s) for q in "abc" for s in range(3)]
    for r in out:
        assert r["answer"] == next(q["answer"] for q in QUERIES if q["id"] == r["query_id"])
        assert "ppl" not in r and "correct" not in r  # they described the teacher's response, not this one
        assert 1 <= r["n_tokens"] <= 12 and r["finish_reason"] in ("stop", "length")
        assert r["finish_reason"] == "stop" or r["n_tokens"] == 12
        assert r["entropy"] > 0 and r["sampling_entropy"] >= 0
    assert len({r["response"] for r in out}) > 3  # different samples of one query differ
    one_by_one = generate_records(QUERIES, model, tok, batch_size=1, **kw)
    assert [r["response"] for r in one_by_one] == [r["response"] for r in out]
    other_seed = generate_records(QUERIES, model, tok, batch_size=4, **{**kw, "seed": 6})
    assert [r["response"] for r in other_seed] != [r["response"] for r in out]


def test_sampling_uses_no_deprecated_transformers_argument(model_and_tok):
    """transformers 5.24 renamed the model's ``past_key_values`` argument to ``cache`` and removes the old
    name in 5.40: the backend must not trigger the deprecation notice (a FutureWarning naming the argument)."""
    import warnings

    model, tok = model_and_tok
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate_records(QUERIES[:1], model, tok, n=2, temperature=1.0, top_p=0.9, max_new_tokens=4, seed=0,
                         progress=False)
    deprecated = [str(w.message) for w in caught if "deprecated" in str(w.message)]
    assert deprecated == []


def test_recorded_entropy_equals_a_teacher_forced_recomputation(model_and_tok):
    model, tok = model_and_tok
    backend = TransformersBackend(model, tok, batch_size=4)
    prompts = [encode_prompt(tok, q["query"], PromptFormat()) for q in QUERIES]
    params = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=10, seed=1)
    sampled = backend.sample_batch(prompts, [11, 12, 13], params)
    for prompt, s in zip(prompts, sampled):
        ids = torch.tensor([prompt + s.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1]  # the distributions the tokens were drawn from
        logp = torch.log_softmax(logits, -1)
        raw = -(logp.exp() * logp).sum(-1).mean().item()
        assert s.entropy == pytest.approx(raw, abs=1e-4)
        q = sampling_distribution(logits, 0.8, 0.9)
        assert s.sampling_entropy == pytest.approx((-(q * q.clamp_min(1e-30).log()).sum(-1)).mean().item(), abs=1e-4)


def test_stop_strings_end_the_response_and_are_removed(model_and_tok):
    model, tok = model_and_tok
    free = generate_records(QUERIES, model, tok, n=4, temperature=1.0, top_p=1.0, max_new_tokens=30, seed=0, progress=False)
    stop = "e"
    assert any(stop in r["response"] for r in free)
    out = generate_records(QUERIES, model, tok, n=4, temperature=1.0, top_p=1.0, max_new_tokens=30, seed=0,
                           stop=[stop], progress=False)
    for r, f in zip(out, free):
        assert stop not in r["response"]
        if stop in f["response"]:  # same random stream: the stopped text is the free text's prefix
            assert r["finish_reason"] == "stop" and f["response"].startswith(r["response"])
            assert r["response"] == f["response"][: f["response"].index(stop)]


class _Interrupting:
    """Wraps a backend and raises KeyboardInterrupt after ``after`` batches, like a killed run."""

    def __init__(self, inner, after):
        self.inner, self.after = inner, after

    def run(self, *args):
        for i, batch in enumerate(self.inner.run(*args)):
            if i == self.after:
                raise KeyboardInterrupt
            yield batch


def test_interrupted_generate_file_resumes_to_the_same_output(tmp_path, model_and_tok, tiny_model_dir):
    model, tok = model_and_tok
    src = tmp_path / "q.jsonl"
    write_records(src, QUERIES)
    base = dict(model=str(tiny_model_dir), input=src, n=2, temperature=1.0, max_new_tokens=8, seed=3,
                batch_size=2, progress=False)
    full = generate_file(GenerateConfig(**base, output=tmp_path / "full.jsonl"),
                         backend=TransformersBackend(model, tok, batch_size=2))
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        generate_file(GenerateConfig(**base, output=out), backend=_Interrupting(TransformersBackend(model, tok, batch_size=2), 1))
    assert not out.exists()
    partial = [json.loads(line) for line in open(str(out) + ".partial")]
    assert len(partial) == 2  # the first batch survived the interrupt
    calls = []

    class Counting(TransformersBackend):
        def sample_batch(self, prompts, seeds, params):
            calls.append(len(prompts))
            return super().sample_batch(prompts, seeds, params)

    generate_file(GenerateConfig(**base, output=out), backend=Counting(model, tok, batch_size=2))
    assert sum(calls) == 4  # only the 4 missing samples were drawn
    assert read_records(out) == read_records(full)
    assert not (tmp_path / "resumed.jsonl.partial").exists()


def test_cli_generate_with_config_file(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from oxa.cli import app

    src = tmp_path / "q.jsonl"
    write_records(src, [{"problem": q["query"], "uid": q["id"]} for q in QUERIES])
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(f"model: {tiny_model_dir}\nn: 2\nmax_new_tokens: 5\nfields:\n  query: problem\n  id: uid\n")
    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(app, ["generate", str(src), "-o", str(out), "--config", str(cfg), "--n", "3"])
    assert result.exit_code == 0, result.output
    rows = read_records(out)
    assert len(rows) == 9 and rows[0]["query_id"] == "a" and rows[-1]["sample"] == 2
    assert all(r["n_tokens"] <= 5 for r in rows)


def test_sample_seed_is_stable_across_processes_and_distinct():
    """Resumed and sharded runs re-derive each sample's seed in another process: it must not depend on
    Python's per-process hash randomisation or any other process state."""
    import os
    import subprocess
    import sys

    keys = [(seed, q, s) for seed in (0, 1) for q in ("q1", "q2", "ü-7") for s in range(3)]
    code = ("import json, sys; from oxa.generation.sampling import sample_seed; "
            "print(json.dumps([sample_seed(*k) for k in json.loads(sys.argv[1])]))")
    here = [sample_seed(*k) for k in keys]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # this process hashes strings with another, random seed
    out = subprocess.run([sys.executable, "-c", code, json.dumps(keys)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == here
    assert all(0 <= x < 2**63 for x in here) and len(set(here)) == len(keys)
    assert len({sample_seed(0, q, s) for q in ("q1", "q2") for s in range(50)}) == 100


def test_vllm_output_conversion():
    completion = SimpleNamespace(text="<think>x</think> \\boxed{5}", token_ids=(1, 2, 3), finish_reason="stop")
    s = from_vllm(completion)
    assert (s.text, s.token_ids, s.finish_reason, s.entropy) == (completion.text, [1, 2, 3], "stop", None)


def test_vllm_backend_end_to_end(tmp_path, tiny_model_dir):
    pytest.importorskip("vllm", reason="vLLM is not installed (its wheels are CUDA-only)")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from oxa.generation import VLLMBackend
    from oxa.models import load_tokenizer

    backend = VLLMBackend(str(tiny_model_dir), load_tokenizer(tiny_model_dir), gpu_memory_utilization=0.3)
    out = generate_records(QUERIES, n=2, max_new_tokens=8, backend=backend, progress=False)
    again = generate_records(QUERIES, n=2, max_new_tokens=8, backend=backend, progress=False)
    assert len(out) == 6 and [r["response"] for r in out] == [r["response"] for r in again]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_write_what_one_process_writes(tmp_path, tiny_model_dir, model_and_tok):
    """Per-sample seeds make the torchrun output (each rank every 2nd query, merged) equal the
    single-process output, sample for sample."""
    import os
    import subprocess
    import sys

    model, tok = model_and_tok
    src = tmp_path / "q.jsonl"
    write_records(src, QUERIES + [{"id": "d", "query": "Half of 18?"}])
    settings = dict(n=2, temperature=1.0, max_new_tokens=8, seed=2)
    generate_file(GenerateConfig(model=str(tiny_model_dir), input=src, output=tmp_path / "one.jsonl", progress=False,
                                 **settings), backend=TransformersBackend(model, tok))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    cfg = tmp_path / "gen.yaml"  # `--n` would be taken by torchrun's own argument parser (as --nnodes...)
    cfg.write_text("n: 2\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "oxa.cli",
           "generate", str(src), "-o", str(tmp_path / "two.jsonl"), "-m", str(tiny_model_dir), "--no-progress",
           "--config", str(cfg), "--temperature", "1.0", "--max-new-tokens", "8", "--seed", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = read_records(tmp_path / "two.jsonl"), read_records(tmp_path / "one.jsonl")
    floats = ("entropy", "sampling_entropy")  # other batch neighbours: equal up to float rounding
    assert [{k: v for k, v in r.items() if k not in floats} for r in two] == \
        [{k: v for k, v in r.items() if k not in floats} for r in one]
    for a, b in zip(two, one):
        assert a["entropy"] == pytest.approx(b["entropy"], abs=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.yaml", "one.jsonl", "q.jsonl", "two.jsonl"]
