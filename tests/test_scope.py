"""SCOPE inside `oxa rl` on a tiny Qwen2: the synthetic world's planted-error trajectories stand in for the
sampled rollouts, and the real salvage transform locates, corrects, continues, grades and replaces them.
Checked against independent computations: the planted first errors, the teacher's answer line, the policy's
own samples from the same seeds, and the GRPO loss written out by hand per token class."""

from __future__ import annotations

import pytest
import torch

from oxa.io import read_records, write_records
from oxa.rl import RLConfig, train_rl
from oxa.prm.diversity import final_answer
from oxa.rl.salvage import ScopeConfig, ScopeTransform, choose_failures, position_bin

T = 0.85
GROUP = 4  # per problem: the right trajectory and the arith, operand, operation... slips (planted_records order)


def test_choose_failures_by_rule():
    failed = [True, False, True, True, True, True, True, True]  # group 0 has a success, group 1 none
    assert choose_failures(failed, 4, "all", None) == [0, 2, 3, 4, 5, 6, 7]
    assert choose_failures(failed, 4, "no_success", None) == [4, 5, 6, 7]
    assert choose_failures(failed, 4, "all", 1) == [0, 4]
    assert choose_failures(failed, 4, "no_success", 2) == [4, 5]


def test_first_error_positions_fall_in_fifths():
    assert [position_bin(p) for p in (0.0, 0.19, 0.2, 0.5, 0.99)] == \
        ["0.0-0.2", "0.0-0.2", "0.2-0.4", "0.4-0.6", "0.8-1.0"]


def test_settings_refuse_what_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="corrector_model"):
        ScopeConfig(enabled=True, corrector="model")
    with pytest.raises(ValueError, match="rollout_backend"):
        RLConfig(model="m", output_dir=tmp_path, prompts="p", rollout_backend="vllm", scope={"enabled": True})
    assert not RLConfig(model="m", output_dir=tmp_path, prompts="p").scope.enabled  # off by default


def test_the_checker_and_teacher_refuse_records_of_another_world(tmp_path, tiny_model_dir):
    from oxa.errors import OxaError

    write_records(tmp_path / "p.jsonl", [{"id": "a", "query": "What is 1 + 1?", "answer": "2"}] * 2)
    cfg = RLConfig(model=str(tiny_model_dir), output_dir=tmp_path / "out", prompts=str(tmp_path / "p.jsonl"),
                   num_generations=2, prompts_per_step=1, micro_batch_size=2, max_steps=1, scope={"enabled": True})
    with pytest.raises(OxaError, match=r"p\.jsonl: record 1: .*synthetic-world records .*missing field\(s\) problem"):
        train_rl(cfg, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], log=lambda *_: None)


def test_scope_flags_parse():
    import typer
    from typer.testing import CliRunner

    from oxa.commands.flags import stage_command

    app, seen = typer.Typer(), []

    @stage_command(app, "rl", RLConfig)
    def rl(cfg) -> None:
        """GRPO."""
        seen.append(cfg)

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["rl", "p", "--model", "m", "--output-dir", "o", "--scope.enabled",
                                      "--scope.which", "no_success", "--scope.max-per-group", "2",
                                      "--scope.prm.threshold", "0.3", "--scope.diversity", "steps",
                                      "--off-policy-tokens", "mask", "--scope.placement", "join"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert cfg.scope.enabled and (cfg.scope.which, cfg.scope.max_per_group) == ("no_success", 2)
    assert cfg.scope.prm.threshold == 0.3 and cfg.scope.prm.prm == "checker" and cfg.scope.diversity == "steps"
    assert cfg.off_policy_tokens == "mask" and cfg.scope.corrector == "teacher" and cfg.scope.placement == "join"
    result = CliRunner().invoke(app, ["rl", "p", "--model", "m", "--output-dir", "o", "--scope.enabled",
                                      "--scope.corrector", "model", "--scope.corrector-model.model", "/models/c",
                                      "--scope.corrector-model.reference-field", "solution"])
    assert result.exit_code == 0, result.output
    corrector = seen[1].scope.corrector_model
    assert (corrector.model, corrector.reference_field) == ("/models/c", "solution")


# ------------------------------------------------------------------------------------------ in a run


@pytest.fixture(scope="module")
def planted():
    """Two problems, each with its right trajectory and three slips (arith / operand / operation or answer)."""
    from oxa.prm.bench import planted_records

    records = planted_records(2, seed=4, kinds=("arith", "operand", "answer"))
    assert [r["error_kind"] for r in records] == ["none", "arith", "operand", "answer"] * 2
    return records


class Scripted:
    """Replaces the sampled rollouts with the planted trajectories of each group's problem (graded by the run's
    reward), then hands the batch to SCOPE's transform; keeps what it saw."""

    def __init__(self, planted, scope: ScopeTransform):
        self.planted, self.scope = planted, scope

    def __call__(self, batch, trainer):
        from oxa.rl.salvage import grade

        tok = trainer.processing_class
        by_problem = {}
        for r in self.planted:
            by_problem.setdefault(r["query_id"], []).append(r)
        for g in range(0, len(batch.records), GROUP):
            for k, r in enumerate(by_problem[batch.records[g]["id"]]):
                ids = tok(r["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                batch.completion_ids[g + k], batch.completions[g + k] = ids, tok.decode(ids, skip_special_tokens=True)
        batch.rewards = grade(trainer, batch.records, batch.completions, batch.completion_ids)
        self.sampled = [list(c) for c in batch.completion_ids]
        self.batch = self.scope(batch, trainer)
        return self.batch


def scope_run(tmp_path, model_dir, planted, **scope):
    from oxa.rl.run import load_rl_prompts, scope_transform

    problems = {r["query_id"]: {k: v for k, v in r.items() if k not in ("response", "strategy", "error_kind", "label")}
                for r in planted}
    write_records(tmp_path / "p.jsonl", [{**p, "id": pid} for pid, p in problems.items()])
    cfg = RLConfig(model=str(model_dir), output_dir=tmp_path / "out", prompts=str(tmp_path / "p.jsonl"),
                   prompt={"suffix": ""}, num_generations=GROUP, prompts_per_step=2, micro_batch_size=4,
                   max_response_length=160, temperature=T, max_steps=1, seed=3, kl_coef=0.0, learning_rate=1.0,
                   max_grad_norm=0.0, weight_decay=0.0, trl_args={"optim": "sgd"},
                   off_policy_tokens=scope.pop("off_policy_tokens", "shape"), scope={"enabled": True, **scope})
    script = Scripted(planted, scope_transform(cfg, load_rl_prompts(cfg)))
    out = train_rl(cfg, rollout_transform=script, log=lambda *_: None)
    return cfg, script, out


def hand_loss(model, batch, mode: str, gamma: float = 0.1):
    """GRPO's token-mean loss written out per token class: on-policy tokens -A exp(logp - logp.detach()), the
    corrected step's tokens -A p/(p + gamma) (shape) or nothing (mask, and not counted). A is the reward's
    z-score within the group as it stands (padding rows are in no group and train nothing)."""
    adv = {}
    for rows in batch.groups(GROUP):
        r = batch.rewards[rows, 0].double()
        adv.update(zip(rows, (r - r.mean()) / (r.std() + 1e-4)))
    terms, counted = [], 0
    for i, a in adv.items():
        prompt, completion, off = batch.prompt_ids[i], batch.completion_ids[i], batch.off_policy[i]
        ids = torch.tensor([list(prompt) + list(completion)])
        logp = torch.log_softmax(model(ids).logits[0, len(prompt) - 1:-1].double() / T, -1)
        logp = logp.gather(1, ids[0, len(prompt):, None]).squeeze(1)
        off = torch.tensor(off)
        p = logp.exp()
        on_policy = -a * torch.exp(logp - logp.detach())
        if mode == "shape":
            terms.append(torch.where(off, -a * p / (p + gamma), on_policy).sum())
            counted += len(completion)
        else:
            terms.append(on_policy[~off].sum())
            counted += int((~off).sum())
    return torch.stack(terms).sum() / counted


def assert_update_is(loss, model, out):
    from transformers import AutoModelForCausalLM

    loss.backward()
    trained = dict(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).named_parameters())
    for name, param in model.named_parameters():
        assert (trained[name].detach() - (param.detach() - param.grad.float())).abs().max().item() < 1e-5, name


def test_salvage_at_the_answer_step_grades_correct_and_replaces_the_failure(tmp_path, tiny_model_dir, planted):
    from transformers import AutoModelForCausalLM

    from oxa.models import load_tokenizer
    from oxa.prm.checker import problem_of
    from oxa.synth.teacher import answer_line

    cfg, script, out = scope_run(tmp_path, tiny_model_dir, planted, off_policy_tokens="mask")
    batch, tok = script.batch, load_tokenizer(tiny_model_dir)
    log = read_records(out / "salvage.jsonl")
    # every failure was located exactly at its planted first error
    wrong = [r for r in planted if r["error_kind"] != "none"]
    assert [(r["id"], r["first_error"]) for r in log] == [(w["query_id"], w["label"]) for w in wrong]
    # the answer slips: prefix kept, the teacher's answer line written, nothing left for the policy: correct
    for row in (3, 7):
        record = planted[row]
        think = record["response"][: record["response"].index("</think>") + len("</think>\n")]
        assert batch.completions[row] == think + answer_line(problem_of(record).answer)
        assert batch.rewards[row, 0] == 1.0
        ids = tok(think, add_special_tokens=False)["input_ids"]
        assert batch.completion_ids[row][: len(ids)] == ids and batch.completion_ids[row][-1] == tok.eos_token_id
        n_off = len(batch.completion_ids[row]) - len(ids) - 1
        assert batch.off_policy[row] == [False] * len(ids) + [True] * n_off + [False]
    # the mid-solution slips, continued by a random policy, still fail: they stay as sampled
    for row in (1, 2, 5, 6):
        assert batch.completion_ids[row] == script.sampled[row] and not any(batch.off_policy[row])
    (row,) = read_records(out / "rl_metrics.jsonl")
    assert [row[f"salvage/{k}"] for k in ("failed", "attempts", "located", "corrected", "successes", "replaced")] == \
        [6.0, 6.0, 6.0, 6.0, 2.0, 2.0]
    assert row["salvage/sampled_reward_mean"] == 0.25 and row["reward_mean"] == 0.5  # before and after salvage
    assert row["prm/missed_failures"] == 0.0 and row["prm/flagged_successes"] == 0.0
    positions = [r["first_error"] / r["steps"] for r in log]
    assert row["salvage/first_error_pos_mean"] == pytest.approx(sum(positions) / len(positions))
    hist = {k.rsplit("/", 1)[1]: v for k, v in row.items() if k.startswith("salvage/first_error_pos/")}
    assert hist == {b: float(sum(position_bin(p) == b for p in positions))
                    for b in ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")}
    sampled = [len({final_answer(r["response"]) for r in planted[g:g + GROUP]}) for g in (0, GROUP)]
    assert row["diversity/distinct_answers"] == pytest.approx(sum(sampled) / 2)
    trained = [len({final_answer(c) for c in batch.completions[g:g + GROUP]}) for g in (0, GROUP)]
    assert row["diversity_trained/distinct_answers"] == pytest.approx(sum(trained) / 2)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert_update_is(hand_loss(model, batch, "mask"), model, out)


def test_a_salvaged_rollout_is_prefix_correction_and_the_policys_own_continuation(tmp_path, tiny_model_dir, planted):
    """keep_failed_salvages: every corrected failure replaces its row, so all three token classes train."""
    from transformers import AutoModelForCausalLM

    from oxa.generation import SamplingParams, sample_seed
    from oxa.models import load_model, load_tokenizer
    from oxa.rl.rollout import sample_rollouts

    cfg, script, out = scope_run(tmp_path, tiny_model_dir, planted, keep_failed_salvages=True)
    batch = script.batch
    log = read_records(out / "salvage.jsonl")
    assert [r["row"] for r in log] == [1, 2, 3, 5, 6, 7] and all(r["replaced"] for r in log)
    tok = load_tokenizer(tiny_model_dir, padding_side="left")
    model = load_model(tiny_model_dir)
    for r in log:
        i, off = r["row"], batch.off_policy[r["row"]]
        kept, n_off = off.index(True), sum(off)
        assert off == [False] * kept + [True] * n_off + [False] * (len(off) - kept - n_off)  # one corrected span
        ids = batch.completion_ids[i]
        assert tok.decode(ids[:kept]) == r["response"][: len(tok.decode(ids[:kept]))]  # the sampled prefix, kept
        assert tok.decode(ids[kept:kept + n_off]) == r["correction"]
        if r["first_error"] == r["steps"] - 1:  # the answer step: nothing left for the policy
            assert ids[kept + n_off:] == [tok.eos_token_id]
            continue
        resumed = kept + n_off + 1  # the separator follows the corrected step, then the policy samples
        assert tok.decode(ids[kept + n_off:resumed]) == "\n"
        params = SamplingParams(temperature=T, top_p=1.0, max_new_tokens=cfg.max_response_length - resumed)
        (tail,) = sample_rollouts(model, tok, [list(batch.prompt_ids[i]) + ids[:resumed]],
                                  [sample_seed(cfg.seed, "scope-step-0", i)], params, batch_size=1)
        assert ids[resumed:] == list(tail)
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert_update_is(hand_loss(fresh, batch, "shape"), fresh, out)


def test_a_model_corrector_sees_the_problem_the_verified_steps_and_the_reference(tiny_model_dir, planted):
    """corrector: model - any model through oxa's generation backend, prompted as oxa.prm.correct says."""
    from oxa.prm.base import judge
    from oxa.prm.correct import CorrectionRequest, ModelCorrector, corrector_prompt

    scope = ScopeTransform(ScopeConfig(enabled=True, corrector="model", corrector_model={
        "model": str(tiny_model_dir), "max_new_tokens": 7, "reference_field": "solution", "device": "cpu"}), {})
    corrector = scope.corrector
    assert isinstance(corrector, ModelCorrector) and corrector.params.max_new_tokens == 7
    seen = []
    corrector.backend.run = lambda prompts, jobs, params, fmt: seen.append(prompts) or iter(())
    record = {**planted[1], "solution": "the reference solution"}
    (j,) = judge(scope.prm, scope.prm.inputs([record["query"]], [record["response"]], [record]))
    request = CorrectionRequest(record["query"], j.steps, j.first_error, record, record["solution"])
    with pytest.raises(KeyError):  # the stubbed backend answers nothing; what it was asked is what matters
        corrector.correct([request])
    (prompts,) = seen
    assert prompts == [corrector_prompt(request)]
    assert "Reference solution:\nthe reference solution" in prompts[0] and record["query"] in prompts[0]
    assert "\n".join(j.steps.texts[: record["label"]]) in prompts[0]


def test_the_scope_preset_is_the_grpo_preset_with_salvage_on():
    """Same start, prompts, objective and budget as configs/rl-synth.yaml: only salvage and run directory differ."""
    from pathlib import Path

    from oxa.config import load_yaml, validate

    root = Path(__file__).resolve().parents[1] / "configs"
    grpo, scope = (validate(RLConfig, load_yaml(root / n), source=n) for n in ("rl-synth.yaml", "rl-synth-scope.yaml"))
    assert scope.scope.enabled and not grpo.scope.enabled and grpo.output_dir != scope.output_dir
    assert grpo.model_dump(exclude={"scope", "output_dir"}) == scope.model_dump(exclude={"scope", "output_dir"})
    assert scope.scope.model_dump(exclude={"enabled"}) == ScopeConfig().model_dump(exclude={"enabled"})  # defaults


def test_join_lays_groups_out_with_slots_and_padding():
    from oxa.rl.rollout import Rollout, RolloutBatch, join_slots

    def batch():
        return RolloutBatch(records=[{"id": g} for g in "aabb"], prompt_ids=[[1], [1], [2], [2]],
                            completion_ids=[[5], [6], [7], [8]], completions=list("wxyz"),
                            rewards=torch.tensor([[0.0], [1.0], [0.0], [0.0]]))

    b = batch()
    b.join({2: Rollout([9, 9], "s", torch.tensor([1.0]), [True, False])}, n=2, slots=1, eos=0)
    assert (b.group_size, b.padding) == (3, [False, False, True, False, False, False])
    assert [r["id"] for r in b.records] == list("aaabbb") and b.prompt_ids == [[1]] * 3 + [[2]] * 3
    assert b.completion_ids == [[5], [6], [0], [7], [8], [9, 9]] and b.completions == ["w", "x", "", "y", "z", "s"]
    assert b.off_policy == [[False], [False], [False], [False], [False], [True, False]]
    assert b.rewards[[0, 1, 3, 4, 5], 0].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0] and torch.isnan(b.rewards[2, 0])
    assert b.groups(2) == [[0, 1], [3, 4, 5]]
    with pytest.raises(ValueError, match="group at row 0: 2 rollouts join it but it has 1 slots"):
        batch().join({i: Rollout([9], "s", torch.tensor([1.0]), [True]) for i in (0, 1)}, n=2, slots=1, eos=0)
    # slots round up so the rows still split into equal micro-batches: groups * (n + slots) % chunks == 0
    for wanted, groups, chunks in [(1, 1, 8), (2, 2, 8), (3, 4, 8), (1, 3, 1), (5, 8, 4), (2, 6, 4)]:
        slots = join_slots(wanted, groups, chunks)
        assert slots >= wanted and groups * slots % chunks == 0
        assert all(groups * s % chunks for s in range(wanted, slots))  # the smallest such


def test_join_adds_salvages_to_their_groups_and_advantages_see_each_group_as_it_stands(tmp_path, tiny_model_dir,
                                                                                       planted):
    """placement: join - the failures stay (negative advantage) and their salvages join the group; each group
    gets n = 4 more slots (max_per_group unset), the unused one a padding row that trains nothing."""
    from transformers import AutoModelForCausalLM

    cfg, script, out = scope_run(tmp_path, tiny_model_dir, planted, keep_failed_salvages=True, placement="join")
    batch = script.batch
    assert batch.group_size == 2 * GROUP and batch.padding == ([False] * 7 + [True]) * 2
    log = read_records(out / "salvage.jsonl")
    assert [r["row"] for r in log] == [1, 2, 3, 5, 6, 7] and all(r["joined"] for r in log)
    for g, sampled in ((0, 0), (8, GROUP)):  # the sampled rollouts as they were, then the salvages in row order
        assert batch.completion_ids[g:g + GROUP] == script.sampled[sampled:sampled + GROUP]
        assert not any(any(m) for m in batch.off_policy[g:g + GROUP])
    assert [batch.completions[i] for i in (4, 5, 6, 12, 13, 14)] == [r["salvaged"] for r in log]
    assert all(any(batch.off_policy[i]) for i in (4, 5, 6, 12, 13, 14))
    (row,) = read_records(out / "rl_metrics.jsonl")
    assert (row["salvage/joined"], row["salvage/replaced"], row["salvage/successes"]) == (6.0, 0.0, 2.0)
    assert row["reward_mean"] == pytest.approx(4 / 14)  # 2 sampled + 2 salvaged right, of 14 rollouts
    assert row["response_length"] == pytest.approx(
        sum(len(batch.completion_ids[i]) for g in batch.groups(GROUP) for i in g) / 14)
    assert row["diversity_trained/distinct_answers"] == pytest.approx(sum(
        len({final_answer(batch.completions[i]) for i in g}) for g in batch.groups(GROUP)) / 2)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert_update_is(hand_loss(model, batch, "shape"), model, out)
