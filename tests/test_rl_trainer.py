"""`oxa rl` end to end on a tiny Qwen2: the first update against a hand-written GRPO loss, the logged metrics
against hand computations, prompt tokens against oxa.prompting, rollouts against their per-sample seeds."""

from __future__ import annotations

import pytest
import torch

from oxa.io import read_records, write_records
from oxa.rl import RLConfig, train_rl

T = 0.85
QUERIES = ["What is 3 + 4?", "Add 12 and 30.", "What is 5 + 5?", "Compute 7 + 8."]


def length_parity_reward(completions, **kwargs):
    """A deterministic reward that splits a random model's rollouts: 1 for an odd text length."""
    return [float(len(c) % 2) for c in completions]


class Recorder:
    """A rollout transform that keeps every graded batch and changes nothing."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch, trainer):
        self.batches.append(batch)
        return batch


def write_prompts(path, n=4):
    write_records(path, [{"id": f"p{i}", "query": QUERIES[i % 4], "answer": str(i)} for i in range(n)])
    return path


def rl_config(tmp_path, model_dir, **overrides) -> RLConfig:
    settings = dict(model=str(model_dir), output_dir=tmp_path / "out", prompts=str(write_prompts(tmp_path / "p.jsonl")),
                    prompt={"suffix": ""}, num_generations=4, prompts_per_step=2, micro_batch_size=4,
                    max_response_length=10, temperature=T, max_steps=1, seed=3, report_to=["none"])
    return RLConfig(**(settings | overrides))


def sgd(**overrides):
    """Plain SGD with lr 1, no clipping, decay or schedule: the parameter change is minus the gradient."""
    return dict(learning_rate=1.0, max_grad_norm=0.0, weight_decay=0.0, lr_scheduler_type="constant",
                trl_args={"optim": "sgd"}) | overrides


def hand_loss(model, batch, aggregation, gamma=0.1):
    """The GRPO loss written out: group-normalised advantages, ratio exp(logp - logp.detach()) (= 1, gradient
    A grad logp) - or LUFFY's -A p / (p + gamma) on tokens marked off-policy - aggregated over every response
    token of the step; plus the token-mean entropy at T."""
    rewards = batch.rewards[:, 0].double()
    groups = rewards.view(-1, 4)
    adv = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).flatten()
    off_policy = batch.off_policy or [[False] * len(c) for c in batch.completion_ids]
    terms, entropies = [], []
    for a, prompt, completion, off in zip(adv, batch.prompt_ids, batch.completion_ids, off_policy):
        ids = torch.tensor([list(prompt) + list(completion)])
        logits = model(ids).logits[0, len(prompt) - 1 : -1].double() / T
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(1, ids[0, len(prompt):, None]).squeeze(1)
        p = logp.exp()
        terms.append(torch.where(torch.tensor(off), -a * p / (p + gamma), -a * torch.exp(logp - logp.detach())))
        entropies.append(-(logp_all.exp() * logp_all).sum(-1).detach())
    if aggregation == "token-mean":
        loss = torch.cat(terms).sum() / sum(len(t) for t in terms)
    else:  # seq-mean-token-mean
        loss = torch.stack([t.mean() for t in terms]).mean()
    return loss, torch.cat(entropies).mean().item()


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_first_update_is_the_gradient_of_the_hand_written_grpo_loss(tmp_path, tiny_model_dir, aggregation):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rec = Recorder()
    cfg = rl_config(tmp_path, tiny_model_dir, loss_aggregation=aggregation, **sgd())
    out = train_rl(cfg, reward_funcs=[length_parity_reward], rollout_transform=rec, log=lambda *_: None)
    (batch,) = rec.batches
    assert len(batch.completion_ids) == 8 and 0 < batch.rewards.sum() < 8

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trained = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    loss, entropy = hand_loss(model, batch, aggregation)
    loss.backward()
    trained_params = dict(trained.named_parameters())
    for name, param in model.named_parameters():
        expected = param.detach() - param.grad.float()
        assert (trained_params[name].detach() - expected).abs().max().item() < 1e-5, name

    (row,) = read_records(out / "rl_metrics.jsonl")
    assert row["step"] == 1
    assert row["entropy"] == pytest.approx(entropy, rel=1e-5)
    assert row["kl"] == pytest.approx(0.0, abs=1e-6) and row["clip_fraction"] == 0.0
    rewards = batch.rewards[:, 0]
    assert row["reward_mean"] == pytest.approx(rewards.mean().item())
    flat = (rewards.view(-1, 4).amax(1) == rewards.view(-1, 4).amin(1)).float().mean().item()
    assert row["frac_zero_std_groups"] == flat
    lengths = [len(c) for c in batch.completion_ids]
    assert row["response_length"] == pytest.approx(sum(lengths) / 8)
    eos = AutoTokenizer.from_pretrained(tiny_model_dir).eos_token_id
    assert row["truncated_share"] == pytest.approx(sum(c[-1] != eos for c in batch.completion_ids) / 8)
    assert all(n <= 10 and (n == 10 or c[-1] == eos) for n, c in zip(lengths, batch.completion_ids))


class Salvage:
    """A rollout transform as SCOPE's will be: it replaces rollout 0 with a corrected answer whose first three
    tokens it marks off-policy, and grades it correct."""

    def __call__(self, batch, trainer):
        tok = trainer.processing_class
        ids = tok("12 + 30 = 42", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        batch.completion_ids[0], batch.completions[0] = ids, tok.decode(ids[:-1])
        batch.rewards[0, 0] = 1.0
        batch.off_policy = [[r == 0 and t < 3 for t in range(len(c))] for r, c in enumerate(batch.completion_ids)]
        batch.metrics = {"salvage/rows": 1.0}
        self.batch = batch
        return batch


def test_a_rollout_transform_replaces_rollouts_and_its_off_policy_tokens_get_luffys_loss(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    salvage = Salvage()
    cfg = rl_config(tmp_path, tiny_model_dir, report_to=["tensorboard"], **sgd())
    out = train_rl(cfg, reward_funcs=[length_parity_reward], rollout_transform=salvage, log=lambda *_: None)
    batch = salvage.batch
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loss, _ = hand_loss(model, batch, "token-mean")
    loss.backward()
    trained = dict(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).named_parameters())
    for name, param in model.named_parameters():
        assert (trained[name].detach() - (param.detach() - param.grad.float())).abs().max().item() < 1e-5, name
    (row,) = read_records(out / "rl_metrics.jsonl")
    assert row["salvage/rows"] == 1.0 and row["reward_mean"] == pytest.approx(batch.rewards.mean().item())

    # the same row reached report_to (here TensorBoard)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in out.rglob("events.out.tfevents.*")}
    board = EventAccumulator(str(events))
    board.Reload()
    for key in ("entropy", "reward_mean", "frac_zero_std_groups", "seconds_generation", "salvage/rows"):
        (scalar,) = board.Scalars(f"train/{key}")
        assert scalar.step == 1 and scalar.value == pytest.approx(row[key], rel=1e-6), key


def test_rollouts_use_oxas_prompt_tokens_and_per_sample_seeds(tmp_path, tiny_model_dir):
    from oxa.generation import SamplingParams
    from oxa.models import load_model, load_tokenizer
    from oxa.prompting import PromptFormat, encode_example, encode_prompt
    from oxa.rl.rollout import rollout_seeds, sample_rollouts

    rec = Recorder()
    cfg = rl_config(tmp_path, tiny_model_dir, prompt={}, max_prompt_length=4096, learning_rate=1e-3)
    train_rl(cfg, reward_funcs=[length_parity_reward], rollout_transform=rec, log=lambda *_: None)
    (batch,) = rec.batches
    tok = load_tokenizer(tiny_model_dir)
    fmt = PromptFormat()  # the paper's suffix, chat template: the default of every stage
    for record, prompt in zip(batch.records, batch.prompt_ids):
        assert list(prompt) == encode_prompt(tok, record["prompt"], fmt)
        enc = encode_example(tok, record["prompt"], "a response", fmt)  # what scoring and training see
        assert list(prompt) == enc.input_ids[: enc.n_prompt]
    assert all(len({r["prompt"] for r in batch.records[g:g + 4]}) == 1 for g in (0, 4))  # groups are contiguous
    # each rollout is the sample its seed (seed, step 0, position) draws from the starting policy
    model = load_model(tiny_model_dir)
    again = sample_rollouts(model, load_tokenizer(tiny_model_dir, padding_side="left"), batch.prompt_ids,
                            rollout_seeds(3, 0, 0, 8), SamplingParams(temperature=T, top_p=1.0, max_new_tokens=10),
                            batch_size=3)
    assert again == [list(c) for c in batch.completion_ids]


class CrashAfter:
    """Raises once optimizer step ``step`` is done and logged, as a killed job would stop."""

    def __init__(self, step):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == outer.step:
                    raise RuntimeError("simulated crash")

        self.step, self.callback = step, _Callback()


def params(path):
    from transformers import AutoModelForCausalLM

    return {k: v.detach() for k, v in AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).named_parameters()}


@pytest.mark.slow
def test_an_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, tiny_model_dir):
    common = dict(max_steps=4, save_steps=2, learning_rate=0.02, policy_loss="clip-cov", clip_cov_ratio=0.05,
                  clip_cov_lb=-1e9, clip_cov_ub=1e9)  # a wide Clip-Cov window: its random draw must resume too
    full = train_rl(rl_config(tmp_path / "a", tiny_model_dir, **common), reward_funcs=[length_parity_reward],
                    log=lambda *_: None)

    cfg = rl_config(tmp_path / "b", tiny_model_dir, **common)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_rl(cfg, reward_funcs=[length_parity_reward], callbacks=[CrashAfter(3).callback], log=lambda *_: None)
    assert [r["step"] for r in read_records(cfg.output_dir / "rl_metrics.jsonl")] == [1, 2, 3]
    resumed = train_rl(cfg.model_copy(update={"resume_from_checkpoint": "latest"}),
                       reward_funcs=[length_parity_reward], log=lambda *_: None)

    a, b = params(full), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a, rows_b = read_records(full / "rl_metrics.jsonl"), read_records(resumed / "rl_metrics.jsonl")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]  # step 3 logged once, though it ran twice (after checkpoint-2)
    for ra, rb in zip(rows_a, rows_b):
        for key in ("reward_mean", "entropy", "response_length", "cov_selected_tokens", "kl"):
            assert ra[key] == rb[key], (ra["step"], key)
    assert sum(r["cov_selected_tokens"] for r in rows_a) > 0


@pytest.mark.slow
def test_periodic_evaluation_is_oxa_eval(tmp_path, synth_base_model):
    from oxa.evaluation import EvalConfig, evaluate
    from oxa.synth.world import WorldConfig, build_world

    _, base = synth_base_model
    rl = build_world(WorldConfig(n_queries=1, rl_prompts=8, benchmark_per_difficulty=0))["rl"]
    write_records(tmp_path / "rl.jsonl", rl)
    ev = dict(benchmarks=["synth-easy"], every=1, n=2, limit=6, max_new_tokens=96, batch_size=16)
    cfg = RLConfig(model=str(base), output_dir=tmp_path / "out", prompts=str(tmp_path / "rl.jsonl"),
                   num_generations=4, prompts_per_step=2, micro_batch_size=8, max_response_length=96, max_steps=2,
                   learning_rate=3e-3, seed=1, eval=ev)
    out = train_rl(cfg, log=lambda *_: None)  # the default reward: oxa.rl.reward.MathReward, the paper's rule

    all_rows = read_records(out / "rl_metrics.jsonl")
    assert [(r["step"], "entropy" in r) for r in all_rows] == [(0, False), (1, False), (1, True), (2, False), (2, True)]
    for row in all_rows[2::2]:  # every rollout of the step has one reward status
        statuses = {k: v for k, v in row.items() if k.startswith("reward_status/")}
        assert sum(statuses.values()) == 8 and row["reward_mean"] == statuses.get("reward_status/correct", 0) / 8
    rows = [r for r in all_rows if "eval/synth-easy/pass@1" in r]
    passes = [r["eval/synth-easy/pass@1"] for r in rows]
    assert all(set(r) >= {"eval/synth-easy/pass@2", "eval/synth-easy/entropy"} for r in rows)

    # step 0 is `oxa eval` of the starting model with the same settings: the same samples, the same Pass@1
    direct = evaluate(EvalConfig(model=str(base), benchmarks=["synth-easy"], output=tmp_path / "direct", n=2, limit=6,
                                 temperature=0.6, top_p=0.95, max_new_tokens=96, seed=1, progress=False))
    assert direct["benchmarks"]["synth-easy"]["pass@1"] == passes[0]
    ours = read_records(out / "eval" / "step-000000" / "samples.jsonl")
    assert [s["response"] for s in ours] == [s["response"] for s in read_records(tmp_path / "direct" / "samples.jsonl")]

    # best/ holds the first evaluation with the highest Pass@1, and evaluating it again gives that value
    import json

    best = json.loads((out / "best" / "best.json").read_text())
    assert best["step"] == passes.index(max(passes)) and best["value"] == max(passes)
    again = evaluate(EvalConfig(model=str(out / "best"), benchmarks=["synth-easy"], output=tmp_path / "again", n=2,
                                limit=6, temperature=0.6, top_p=0.95, max_new_tokens=96, seed=1, progress=False))
    assert again["benchmarks"]["synth-easy"]["pass@1"] == best["value"]


def test_best_is_the_policy_of_the_first_evaluation_with_the_highest_pass_at_1(tmp_path, tiny_model_dir, monkeypatch):
    import json

    import oxa.rl.periodic_eval as periodic

    # Pass@1 at steps 0..3 on two benchmarks: the best by b is step 2, by their average step 1
    scores = iter([(0.25, 0.5), (0.5, 0.5), (0.75, 0.0), (0.5, 0.5)])

    def scripted(config, backend=None):
        b, c = next(scores)
        return {"benchmarks": {"b": {"pass@k": {"1": b}}, "c": {"pass@k": {"1": c}}}, "average": {"pass@1": (b + c) / 2}}

    monkeypatch.setattr(periodic, "evaluate", scripted)
    cfg = rl_config(tmp_path, tiny_model_dir, max_steps=3, save_steps=1, learning_rate=0.05,
                    eval={"benchmarks": ["b", "c"], "every": 1, "best_by": "average"})
    out = train_rl(cfg, reward_funcs=[length_parity_reward], log=lambda *_: None)
    assert json.loads((out / "best" / "best.json").read_text()) == \
        {"step": 1, "metric": "eval/average/pass@1", "value": 0.5}
    best, at_1, at_2 = params(out / "best"), params(out / "checkpoint-1"), params(out / "checkpoint-2")
    assert all(torch.equal(best[k], at_1[k]) for k in best) and any(not torch.equal(best[k], at_2[k]) for k in best)
    evals = [(r["step"], r["eval/b/pass@1"], r["eval/average/pass@1"])
             for r in read_records(out / "rl_metrics.jsonl") if "eval/b/pass@1" in r]
    assert evals == [(0, 0.25, 0.375), (1, 0.5, 0.5), (2, 0.75, 0.375), (3, 0.5, 0.5)]
