"""Training a separator-style PRM: labels sit at the marks, and a trained PRM learns a rule it is shown."""

from __future__ import annotations

import json
import random

import pytest

from oxa.errors import RecordError
from oxa.prm import PRMConfig, PRMTrainConfig, SeparatorPRM, StepInput, join_steps, load_prm, train_prm
from oxa.prm.bench import planted_records, stepwise_records
from oxa.prm.train import IGNORE, encode_examples, load_examples


def _examples(n: int, seed: int) -> list[dict]:
    """Arithmetic steps; a step is wrong exactly when it says "oops" (a rule a tiny model can learn)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        steps, labels = [], []
        for _ in range(rng.randint(1, 4)):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            wrong = rng.random() < 0.4
            steps.append(f"{a} + {b} = {a + b}" + (" oops" if wrong else ""))
            labels.append(not wrong)
        out.append({"prompt": f"Add {rng.randint(1, 9)} numbers.", "completions": steps, "labels": labels})
    return out


def test_labels_sit_exactly_at_the_step_marks(tiny_tokenizer, tiny_model_dir, tmp_path):
    from oxa.prm.tiny import with_step_token

    tok = with_step_token(tiny_tokenizer)
    cfg = PRMTrainConfig(base=str(tiny_model_dir), output=tmp_path / "x")
    examples = _examples(20, seed=0)
    mark = tok.convert_tokens_to_ids("<extra_0>")
    for ex, row in zip(examples, encode_examples(examples, tok, cfg)):
        at_marks = [label for tid, label in zip(row["input_ids"], row["labels"]) if tid == mark]
        assert at_marks == [int(x) for x in ex["labels"]]
        assert sum(label != IGNORE for label in row["labels"]) == len(ex["labels"])


def test_stepwise_records_from_planted_errors():
    from oxa.prm import split_steps

    records = planted_records(5, seed=0, held_out=False)
    for r, dropped, wrong in zip(records, stepwise_records(records), stepwise_records(records, after_error="wrong")):
        steps = split_steps(r["response"]).texts
        assert dropped["prompt"] == wrong["prompt"] == r["query"] and wrong["completions"] == steps
        if r["label"] == -1:
            assert dropped["completions"] == steps and all(dropped["labels"]) and all(wrong["labels"])
            continue
        first = r["label"]
        assert dropped["completions"] == steps[: first + 1] and dropped["labels"] == [True] * first + [False]
        assert wrong["labels"] == [True] * first + [False] * (len(steps) - first)


def test_bad_training_records_name_file_record_and_field(tmp_path, tiny_model_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "labels": [True]}) + "\n")
    with pytest.raises(RecordError, match="bad.jsonl: record 1.*equal length"):
        load_examples(PRMTrainConfig(base=str(tiny_model_dir), output=tmp_path / "o", data=path))
    path.write_text(json.dumps({"prompt": "p", "steps": ["a"]}) + "\n")
    with pytest.raises(RecordError, match="'completions' is missing"):
        load_examples(PRMTrainConfig(base=str(tiny_model_dir), output=tmp_path / "o", data=path))


@pytest.mark.slow
def test_a_trained_prm_learns_the_rule_it_was_shown(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in _examples(640, seed=1)))
    out = train_prm(PRMTrainConfig(base=str(tiny_model_dir), output=tmp_path / "prm", data=data, epochs=1.0,
                                   batch_size=16, learning_rate=3e-3, progress=False), log=lambda *_: None)
    assert (out / "prm_train.json").exists() and not list(tmp_path.glob(".prm.*"))
    prm = load_prm(PRMConfig(prm=str(out), device="cpu"))
    assert isinstance(prm, SeparatorPRM)
    test = _examples(100, seed=2)
    scores = prm.score([StepInput(e["prompt"], join_steps(e["completions"], "\n\n")) for e in test])
    pairs = [(s, ok) for e, ss in zip(test, scores) for s, ok in zip(ss, e["labels"])]
    accuracy = sum((s >= 0.5) == ok for s, ok in pairs) / len(pairs)
    assert accuracy > 0.95, accuracy
