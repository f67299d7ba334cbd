"""Process reward models: step splitting, the exact checker, transformers PRMs against hand computations."""

from __future__ import annotations

import random

import pytest
import torch

from oxa.errors import OxaError
from oxa.prm import (
    CheckerPRM,
    PRMConfig,
    SeparatorPRM,
    StepInput,
    StepSplit,
    StepTagPRM,
    first_below,
    join_steps,
    judge,
    load_prm,
    measure_on_planted,
    planted_records,
    processbench_report,
    split_steps,
)
from oxa.prm.hf import QWEN_PRM_SYSTEM
from oxa.prm.tiny import build_tiny_separator_prm
from oxa.synth.checker import check_steps
from oxa.synth.problems import FAMILIES, make_problem
from oxa.synth.teacher import ERROR_KINDS, corrupt, solve, strategies_for


# ------------------------------------------------------------------------------------------ steps
def test_split_lines_inside_think_with_offsets_and_an_answer_step():
    response = "<think>\n3 + 4 = 7\n\n  7 * 2 = 14  \nSo far so good.\n</think>\nThe answer is \\boxed{14}."
    steps = split_steps(response)
    assert steps.texts == ["3 + 4 = 7", "7 * 2 = 14", "So far so good.", "The answer is \\boxed{14}."]
    assert [s.answer for s in steps.steps] == [False, False, False, True]
    for s in steps.steps:
        assert response[s.start : s.end] == s.text
    assert steps.prefix(1) == "<think>\n3 + 4 = 7\n\n  "
    assert steps.prefix(3) == response[: response.index("The answer")]
    assert steps.prefix(len(steps)) == response


def test_split_paragraphs_and_unclosed_reasoning():
    text = "Step one.\nstill one\n\nStep two.\n\n\n\nStep three."
    steps = split_steps(text, StepSplit(separator="\n\n", scope="all"))
    assert steps.texts == ["Step one.\nstill one", "Step two.", "Step three."]
    assert all(text[s.start : s.end] == s.text for s in steps.steps)
    unclosed = split_steps("<think>\na = 1\nb = 2")
    assert unclosed.texts == ["a = 1", "b = 2"] and not any(s.answer for s in unclosed.steps)
    whole = split_steps("<think>\na\n</think>\nB", StepSplit(scope="all"))
    assert whole.texts == ["<think>", "a", "</think>", "B"]


def test_join_steps_and_first_below():
    steps = join_steps(["a", "bb", "c"], "\n\n")
    assert steps.response == "a\n\nbb\n\nc" and [(s.start, s.end) for s in steps.steps] == [(0, 1), (3, 5), (7, 8)]
    assert first_below([0.9, None, 0.4, 0.1], 0.5) == 2
    assert first_below([0.9, None, 0.6], 0.5) is None
    assert first_below([0.3], 0.3) is None  # strictly below


# ------------------------------------------------------------------------------------------ checker PRM
def _problems(n: int, seed: int = 0):
    rng = random.Random(seed)
    return [make_problem(rng, FAMILIES[i % 4], 1 + (i // 4) % 3, f"p{i}") for i in range(n)]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_checker_prm_first_error_is_the_checkers_and_the_planted_one(kind):
    """The PRM's first error (over all lines) is the checker's (over arithmetic lines) and the planted slip's line."""
    rng = random.Random(kind)
    prm = CheckerPRM()
    for p in _problems(60, seed=2):
        strategy = rng.choice(strategies_for(p))
        traj = corrupt(p, strategy, rng, kind=kind)
        record = p.to_record()
        [j] = judge(prm, prm.inputs([p.query], [traj.response], [record]))
        report = check_steps(p, traj.response)
        judged = [i for i, s in enumerate(j.steps.steps) if s.answer or any(c.isdigit() for c in s.text)]
        expected_line = (traj.step_lines[traj.first_error] if traj.first_error < len(traj.steps) else len(traj.lines))
        assert j.first_error == expected_line, (traj.response, j.scores)
        if report.first_error < len(report.steps):  # the checker counts only arithmetic lines
            assert j.steps[j.first_error].text == report.steps[report.first_error].line
        else:
            assert j.steps[j.first_error].answer
        assert j.first_error in judged
        assert traj.response[j.error_offset :].startswith(j.steps[j.first_error].text)


def test_checker_prm_accepts_every_teacher_solution():
    prm = CheckerPRM()
    for p in _problems(40):
        for s in strategies_for(p):
            [j] = judge(prm, prm.inputs([p.query], [solve(p, s).response], [p.to_record()]))
            assert j.first_error is None and set(j.scores) == {1.0}


def test_checker_prm_needs_a_synthetic_record():
    prm = CheckerPRM()
    with pytest.raises(OxaError, match="problem"):
        prm.score(prm.inputs(["q"], ["<think>\n1 + 1 = 2\n</think>\n\\boxed{2}"], [{"query": "q"}]))


def test_processbench_report_by_hand():
    predicted = [2, -1, 3, -1, 0, 1]
    labels = [2, 2, 3, -1, -1, -1]
    r = processbench_report(predicted, labels, ["a", "a", "b", "b", "a", "b"])
    assert (r.n_error, r.n_correct) == (3, 3)
    assert r.error_acc == pytest.approx(2 / 3) and r.correct_acc == pytest.approx(1 / 3)
    assert r.f1 == pytest.approx(2 * (2 / 3) * (1 / 3) / (2 / 3 + 1 / 3))
    assert r.groups["a"]["error_acc"] == pytest.approx(1 / 2) and r.groups["a"]["correct_acc"] == 0.0
    assert r.groups["b"]["error_acc"] == 1.0 and r.groups["b"]["correct_acc"] == pytest.approx(1 / 2)


def test_exact_checker_is_perfect_on_planted_errors():
    records = planted_records(30, seed=4)
    assert {r["error_kind"] for r in records} == {"none", *ERROR_KINDS}
    report = measure_on_planted(CheckerPRM(), records)
    assert (report.error_acc, report.correct_acc, report.f1) == (1.0, 1.0, 1.0)
    assert report.n_error == 120 and report.n_correct == 30


# ------------------------------------------------------------------------------------------ transformers PRMs
ITEMS = [
    ("What is 3 + 4?", ["3 + 4 = 7", "So the sum is 7.", "The answer is \\boxed{7}."]),
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
     ["In May she sold 48 / 2 = 24 clips.", "Altogether 48 + 24 = 72."]),
    ("Tiny.", ["x"]),
]


@pytest.fixture(scope="module")
def separator_prm(tiny_tokenizer):
    model, tok = build_tiny_separator_prm(tiny_tokenizer, seed=1, hidden=64, layers=2, heads=4, kv_heads=2)
    return model.eval(), tok


def _items(split=StepSplit()):
    return [StepInput(q, join_steps(s, split.separator)) for q, s in ITEMS]


def test_separator_prm_is_the_class1_softmax_at_the_marks(separator_prm):
    """Qwen2.5-Math-PRM's recipe by hand, one unpadded sequence at a time, against the batched PRM."""
    model, tok = separator_prm
    sep_id = tok.convert_tokens_to_ids("<extra_0>")
    for budget in (16384, 60):  # one batch, and one sequence per batch
        prm = SeparatorPRM(model, tok, token_budget=budget)
        got = prm.score(_items())
        for (query, steps), scores in zip(ITEMS, got):
            messages = [{"role": "system", "content": QWEN_PRM_SYSTEM}, {"role": "user", "content": query},
                        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
            ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0]
            expected = torch.softmax(logits[ids[0] == sep_id], dim=-1)[:, 1]
            assert len(scores) == len(steps) == len(expected)
            assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert len({round(s, 6) for scores in got for s in scores}) > 3  # a random head gives distinct scores


def test_separator_prm_mark_inside_a_step_does_not_shift_scores(separator_prm):
    model, tok = separator_prm
    prm = SeparatorPRM(model, tok)
    [scores] = prm.score([StepInput("q", join_steps(["a <extra_0> b", "c"], "\n\n"))])
    assert len(scores) == 2  # three <extra_0> tokens in the text, two steps scored


def test_separator_prm_length_cap_leaves_late_steps_unscored(separator_prm):
    model, tok = separator_prm
    full = SeparatorPRM(model, tok).score(_items()[:1])[0]
    n_ids = len(SeparatorPRM(model, tok).encode(*ITEMS[0]).input_ids)
    capped = SeparatorPRM(model, tok, max_len=n_ids - 3).score(_items()[:1])[0]
    assert capped[-1] is None and capped[:-1] == pytest.approx(full[:-1], abs=1e-5)


def test_tag_prm_is_p_plus_between_plus_and_minus_at_the_tags(tiny_tokenizer, tiny_model_dir):
    """Math-Shepherd's recipe by hand: full LM logits, the two candidate tokens, at each tag's last token."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = tiny_tokenizer
    plus, minus = tok.encode("+", add_special_tokens=False), tok.encode("-", add_special_tokens=False)
    prm = StepTagPRM(model, tok, token_budget=100)
    got = prm.score(_items())
    for (query, steps), scores in zip(ITEMS, got):
        text = query + " " + "\n".join(s + " ки" for s in steps)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        expected = []
        for k in range(len(steps)):  # the tag's last token: the length of the text up to its end, minus one
            upto = query + " " + "\n".join(s + " ки" for s in steps[: k + 1])
            pos = len(tok(upto, add_special_tokens=False)["input_ids"]) - 1
            expected.append(torch.softmax(logits[pos, plus + minus], dim=-1)[0].item())
        assert scores == pytest.approx(expected, abs=1e-5)


def test_load_prm_detects_the_style_and_refuses_what_it_cannot_run(tmp_path, separator_prm, tiny_model_dir):
    model, tok = separator_prm
    model.save_pretrained(tmp_path / "sep")
    tok.save_pretrained(tmp_path / "sep")
    loaded = load_prm(PRMConfig(prm=str(tmp_path / "sep"), device="cpu"))
    assert isinstance(loaded, SeparatorPRM) and loaded.split.separator == "\n\n"
    for a, b in zip(loaded.score(_items()), SeparatorPRM(model, tok).score(_items()), strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    tagged = load_prm(PRMConfig(prm=str(tiny_model_dir), device="cpu", separator="\n"))
    assert isinstance(tagged, StepTagPRM)
    assert isinstance(load_prm(PRMConfig(prm="checker")), CheckerPRM)
    with pytest.raises(OxaError, match="not found"):
        load_prm(PRMConfig(prm=str(tmp_path / "nowhere")))
    with pytest.raises(OxaError, match="single-token"):
        load_prm(PRMConfig(prm=str(tiny_model_dir), device="cpu", good_token="хорошо"))
    with pytest.raises(OxaError, match="one line"):
        load_prm(PRMConfig(prm="checker", separator="\n\n"))


REMOTE_PRM_CODE = '''
import torch
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel


class TinyProcessRewardModel(Qwen2PreTrainedModel):
    """A Qwen2 body and a 2-output MLP head returning a plain tuple, as Qwen2.5-Math-PRM's own code does."""

    config_class = Qwen2Config

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        h = config.hidden_size
        self.score = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (self.score(hidden),)
'''


def test_a_prm_shipping_its_own_code_needs_trust_and_is_read_at_output_0(tmp_path, separator_prm):
    """The Qwen2.5-Math-PRM path: AutoModel with the repository's code, logits as outputs[0]."""
    import importlib.util
    import sys

    from transformers import Qwen2Config

    _, tok = separator_prm
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "modeling_tiny_prm.py").write_text(REMOTE_PRM_CODE)
    spec = importlib.util.spec_from_file_location("modeling_tiny_prm", tmp_path / "remote" / "modeling_tiny_prm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    config.auto_map = {"AutoModel": "modeling_tiny_prm.TinyProcessRewardModel"}
    torch.manual_seed(3)
    model = module.TinyProcessRewardModel(config).eval()
    model.config.architectures = ["TinyProcessRewardModel"]
    model.save_pretrained(tmp_path / "remote")
    tok.save_pretrained(tmp_path / "remote")
    sys.modules.pop("modeling_tiny_prm", None)

    with pytest.raises(OxaError, match="ships its own model code"):
        load_prm(PRMConfig(prm=str(tmp_path / "remote"), device="cpu"))
    prm = load_prm(PRMConfig(prm=str(tmp_path / "remote"), device="cpu", trust_remote_code=True))
    assert isinstance(prm, SeparatorPRM)
    got = prm.score(_items())
    sep_id = tok.convert_tokens_to_ids("<extra_0>")
    for (query, steps), scores in zip(ITEMS, got):
        messages = [{"role": "system", "content": QWEN_PRM_SYSTEM}, {"role": "user", "content": query},
                    {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
        ids = torch.tensor([tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids)[0][0]
        assert scores == pytest.approx(torch.softmax(logits[ids[0] == sep_id], -1)[:, 1].tolist(), abs=1e-5)
