"""The RL reward against math-verify's own ``math_metric``, called as verl's ``math_verify.compute_score`` does."""

from __future__ import annotations

import json
import random
import time

import pytest
from math_verify import ExprExtractionConfig, LatexExtractionConfig, math_metric

from oxa.rl.reward import REWARD_STATUSES, MathReward, RewardConfig
from oxa.verify import grade_many

METRIC = math_metric(gold_extraction_target=(LatexExtractionConfig(),),
                     pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig()))


def reference_reward(text: str, gold, require_think: bool = True) -> float:
    """The authors' reward, written out independently: 0 without </think>; else math_metric on the text
    after the last </think> with the gold wrapped in \\boxed{}; any gold of a list may match."""
    if "</think>" in text:
        text = text[text.rfind("</think>") + len("</think>"):]
    elif require_think:
        return 0.0
    best = 0.0
    for g in gold if isinstance(gold, list) else [gold]:
        try:
            score, _ = METRIC(["\\boxed{" + str(g) + "}"], [text])
        except Exception:  # verl's compute_score: a gold math-verify cannot read scores 0
            score = 0.0
        best = max(best, score)
    return best


CASES = [  # (completion, gold, expected status)
    ("<think>6*7</think> The answer is $\\boxed{42}$.", "42", "correct"),
    ("<think>6*7</think> \\boxed{41}", "42", "incorrect"),
    ("<think>half</think> The final answer is $\\frac{1}{2}$", "0.5", "correct"),  # unboxed, other form
    ("<think>r</think> so the total is 44 stickers", "44", "correct"),  # a plain final number
    ("<think>r</think> Therefore $x = 7$.", "7", "correct"),
    ("6*7 = 42, \\boxed{42}", "42", "no_think"),  # right, but no </think>
    ("<think>6*7 = 42, \\boxed{42}", "42", "no_think"),  # cut off mid-reasoning
    ("<think>first</think> \\boxed{1} <think>again</think> \\boxed{42}", "42", "correct"),  # after the last </think>
    ("<think>first</think> \\boxed{42} <think>again</think> \\boxed{1}", "42", "incorrect"),
    ("<think>first</think> <think> \\boxed{42}", "42", "correct"),  # a stray <think> after the last </think>
    ("<think>r</think>", "42", "unparsable"),  # nothing after the reasoning
    ("<think>r</think> \\boxed{(-\\infty, 3]}", "(-\\infty,3]", "correct"),
    ("<think>r</think> \\boxed{\\{1, 2\\}}", "\\{2,1\\}", "correct"),
    ("<think>r</think> \\boxed{2\\sqrt{2}}", "\\sqrt{8}", "correct"),
    ("<think>r</think> \\boxed{3\\sqrt{2}}", "\\sqrt{8}", "incorrect"),
    ("<think>r</think> \\boxed{\\text{(C)}}", "\\text{(C)}", "correct"),
    ("<think>r</think> \\boxed{7}", ["7\n", "seven"], "correct"),  # Minerva: a list, any may match
    ("<think>r</think> \\boxed{0.25}", ["1/3\n", "\\frac{1}{4}\n"], "correct"),
    ("<think>r</think> \\boxed{5}", ["7\n", "8\n"], "incorrect"),
    ("<think>r</think> \\boxed{42}", 42, "correct"),  # numeric golds
    ("<think>r</think> \\boxed{2.5}", 2.5, "correct"),
    ("<think>r</think> \\boxed{025}", "25", "correct"),
]


@pytest.fixture(scope="module")
def reward():
    with MathReward(RewardConfig(workers=2, timeout=5.0)) as r:
        yield r


def test_reward_agrees_with_math_metric(reward):
    texts, golds, expected = zip(*CASES)
    results = reward.grade(list(texts), list(golds))
    assert [r.status for r in results] == list(expected)
    assert [r.reward for r in results] == [reference_reward(t, g) for t, g in zip(texts, golds)]
    assert reward.pop_stats() == {s: list(expected).count(s) for s in REWARD_STATUSES}
    assert reward.pop_stats() == dict.fromkeys(REWARD_STATUSES, 0)  # counts reset


def test_require_think_off_grades_the_whole_response():
    texts = ["6*7 = 42, \\boxed{42}", "so the answer is 41", "<think>6*7 = 42, \\boxed{42}"]
    with MathReward(RewardConfig(require_think=False, workers=1)) as r:
        results = r.grade(texts, ["42"] * 3)
    assert [x.reward for x in results] == [reference_reward(t, "42", require_think=False) for t in texts[:2]] + [0.0]
    assert [x.status for x in results] == ["correct", "incorrect", "no_think"]


def test_boxed_mode_is_oxa_verify(reward):
    """boxed: only a \\boxed{} answer counts, exactly as `oxa verify --require-think` grades."""
    texts, golds, _ = zip(*CASES)
    with MathReward(RewardConfig(mode="boxed", workers=1)) as boxed:
        results = boxed.grade(list(texts), list(golds))
    verdicts = grade_many(list(texts), list(golds), workers=1, progress=False, require_think=True)
    assert [r.reward for r in results] == [float(v.correct) for v in verdicts]
    assert [r.status for r in results][:3] == ["correct", "incorrect", "unparsable"]  # the unboxed answer scores 0
    assert results[2].reward == 0.0 and reference_reward(texts[2], golds[2]) == 1.0


def test_trl_reward_function_call(reward):
    """TRL calls it with prompts, completions (text or chat messages) and the dataset columns."""
    completions = [[{"role": "assistant", "content": "<think>r</think> \\boxed{42}"}], "<think>r</think> \\boxed{1}"]
    rewards = reward(prompts=["q", "q"], completions=completions, answer=["42", "42"], id=["a", "b"])
    assert rewards == [1.0, 0.0]
    assert reward.__name__ == "math_reward"
    with pytest.raises(ValueError, match="answer"):
        reward(prompts=["q"], completions=["x"])
    reward.pop_stats()


def test_identical_pairs_graded_once(reward, monkeypatch):
    sent = []
    grade = reward._pool.grade
    monkeypatch.setattr(reward._pool, "grade", lambda tasks, *a: sent.append(list(tasks)) or grade(tasks, *a))
    texts = ["<think>a</think> \\boxed{42}"] * 6 + ["<think>b</think> \\boxed{41}"] * 2 + ["no think"]
    results = reward.grade(texts, ["42"] * 9)
    assert [r.reward for r in results] == [1.0] * 6 + [0.0] * 3
    assert len(sent) == 1 and len(sent[0]) == 2  # two distinct answers reached the workers; no_think never does
    reward.pop_stats()


def test_malformed_gold_is_an_error(reward):
    with pytest.raises(ValueError, match="gold answer 1"):
        reward.grade(["<think></think>1", "<think></think>1"], ["1", ""])


def test_pathological_answer_times_out_without_stalling_the_batch():
    """sympy evaluating 10^(10^(10^10)) hangs in C code; the deadline stops it, the rest is graded."""
    timeout = 1.0
    texts = ["<think>r</think> \\boxed{10^{10^{10^{10}}}}", "<think>r</think> \\boxed{3}", "<think>r</think> \\boxed{4}"]
    with MathReward(RewardConfig(workers=1, timeout=timeout)) as r:
        r.grade(["<think></think> \\boxed{1}"], ["1"])  # workers started and warm
        r.pop_stats()
        t0 = time.monotonic()
        results = r.grade(texts, ["3", "3", "3"])
        elapsed = time.monotonic() - t0
        assert [(x.reward, x.status) for x in results] == [(0.0, "timeout"), (1.0, "correct"), (0.0, "incorrect")]
        assert r.pop_stats()["timeout"] == 1 and r.workers_killed == 1
    assert timeout <= elapsed < timeout + 3.0


def test_agreement_on_real_benchmark_answers(shared_data):
    """Right, wrong, unboxed and think-less answers built from the paper's benchmarks' real golds."""
    rng = random.Random(0)
    texts, golds = [], []
    for name in ("math500", "minerva", "hmmt25", "brumo25", "cmimc25", "aime24"):
        rows = json.loads((shared_data / "benchmarks" / f"{name}.json").read_text(encoding="utf-8"))
        answers = [r["answer"] for r in rows]
        for row in rng.sample(rows, 12):
            gold = row["answer"]
            first = (gold[0] if isinstance(gold, list) else str(gold)).strip()
            other = rng.choice(answers)
            other = (other[0] if isinstance(other, list) else str(other)).strip()
            for text in (f"<think>r</think> So the answer is $\\boxed{{{first}}}$.", f"<think>r</think> \\boxed{{{other}}}",
                         f"<think>r</think> The final answer is ${first}$", f"reasoning only \\boxed{{{first}}}"):
                texts.append(text)
                golds.append(gold)
    with MathReward(RewardConfig(workers=2, timeout=10.0)) as r:
        ours = [x.reward for x in r.grade(texts, golds)]
    ref = [reference_reward(t, g) for t, g in zip(texts, golds)]
    disagree = [(t, g, a, b) for t, g, a, b in zip(texts, golds, ours, ref) if a != b]
    assert not disagree, f"{len(disagree)}/{len(texts)} disagree: {disagree[:5]}"
    assert 0.3 < sum(ours) / len(ours) < 0.7  # both right and wrong answers were there
