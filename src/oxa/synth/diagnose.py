"""What a synth base model gets wrong: teacher-forced token accuracy by role, and greedy accuracy.

A tiny model that learned the format but not the numbers looks fine by its loss; splitting next-token
accuracy by what each response token is for tells copying from computing:

* ``operand`` - a number the solution restates (copied from the question or an earlier line),
* ``result``  - a number right after ``=`` (computed),
* ``answer``  - the number inside ``\\boxed{...}``,
* ``format``  - everything else (words, symbols, tags).

Number roles get a ``1`` suffix for their first digit (``result1``), the digit that needs the whole
computation. ``python -m oxa.synth.diagnose MODEL_DIR`` prints both measures for held-out problems
solved with each family's most frequent pre-training strategy.
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter

from oxa.prompting import PromptFormat, encode_prompt
from oxa.synth.corpus import PRETRAIN_MIX, sample_problem
from oxa.synth.problems import Problem
from oxa.synth.teacher import solve

NUMBER = re.compile(r"\d+")
BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


def char_roles(response: str) -> list[str]:
    """The role of every character of ``response`` (see the module docstring)."""
    roles = ["format"] * len(response)
    for m in NUMBER.finditer(response):
        before = response[:m.start()]
        role = "answer" if before.endswith("\\boxed{") else "result" if re.search(r"=\s*$", before) else "operand"
        for j in range(m.start(), m.end()):
            roles[j] = role + ("1" if j == m.start() else "")
    return roles


def diagnostic_problems(n: int, seed: int = 7) -> list[tuple[Problem, str]]:
    """``n`` held-out problems, each with its solution by the family's most frequent pre-training strategy."""
    rng, out = random.Random(seed), []
    for i in range(n):
        p = sample_problem(rng, i, prefix="diagnose", held=True)
        strategy = max(PRETRAIN_MIX[p.family], key=PRETRAIN_MIX[p.family].get)
        out.append((p, solve(p, strategy).response))
    return out


def role_accuracy(model, tokenizer, items: list[tuple[Problem, str]], fmt: PromptFormat = PromptFormat()
                  ) -> dict[str, tuple[int, int]]:
    """Teacher-forced argmax hits and token counts of the response per role, and per ``d<difficulty>:<role>``
    (a token's role is its first character's)."""
    import torch

    hits, totals = Counter(), Counter()
    with torch.no_grad():
        for problem, response in items:
            prompt = encode_prompt(tokenizer, problem.query, fmt)
            enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
            ids = torch.tensor([prompt + enc["input_ids"]], device=model.device)
            predicted = model(input_ids=ids).logits[0, len(prompt) - 1:-1].argmax(-1).tolist()
            roles = char_roles(response)
            for token, guess, (start, _) in zip(enc["input_ids"], predicted, enc["offset_mapping"]):
                for key in (roles[start], f"d{problem.difficulty}:{roles[start]}"):
                    hits[key] += guess == token
                    totals[key] += 1
    return {k: (hits[k], totals[k]) for k in sorted(totals)}


def greedy_completions(model, tokenizer, problems: list[Problem], *, max_new_tokens: int = 192,
                       batch_size: int = 64, fmt: PromptFormat = PromptFormat()) -> list[str]:
    """Each problem's greedy completion (batched, prompts left-padded), as text."""
    import torch

    pad, texts = tokenizer.pad_token_id, []
    with torch.no_grad():
        for i in range(0, len(problems), batch_size):
            prompts = [encode_prompt(tokenizer, p.query, fmt) for p in problems[i:i + batch_size]]
            width = max(map(len, prompts))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
            out = model.generate(input_ids=ids, attention_mask=(ids != pad).long(), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
            texts += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return texts


def greedy_accuracy(model, tokenizer, problems: list[Problem], **kwargs) -> dict[int, float]:
    """Share of problems per difficulty whose greedy completion's last ``\\boxed{}`` is the right integer."""
    right, totals = Counter(), Counter()
    for p, text in zip(problems, greedy_completions(model, tokenizer, problems, **kwargs)):
        boxed = BOXED.findall(text)
        right[p.difficulty] += bool(boxed) and int(boxed[-1]) == p.answer
        totals[p.difficulty] += 1
    return {d: right[d] / totals[d] for d in sorted(totals)}


def main(argv: list[str]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oxa.synth.world import benchmark_records

    if len(argv) != 1:
        sys.exit("usage: python -m oxa.synth.diagnose MODEL_DIR")
    model = AutoModelForCausalLM.from_pretrained(argv[0]).eval()
    tok = AutoTokenizer.from_pretrained(argv[0])
    roles = {k: hits / n for k, (hits, n) in role_accuracy(model, tok, diagnostic_problems(150)).items()}
    print("token accuracy by role:", {k: round(v, 3) for k, v in roles.items() if ":" not in k})
    for d in (1, 2, 3):
        print(f"  difficulty {d}:", {k.split(":")[1]: round(v, 3) for k, v in roles.items() if k.startswith(f"d{d}:")})
    bench = [Problem.from_record(r) for r in benchmark_records(60)]
    print("greedy accuracy by difficulty:", {d: round(v, 3) for d, v in greedy_accuracy(model, tok, bench).items()})


if __name__ == "__main__":
    main(sys.argv[1:])
