"""A second answer extractor, to count where the choice of grader changes a verdict.

The OXA reference evaluates with DeepScaleR's rule but rewards RL with math-verify on the text after
the last ``</think>``. DeepScaleR's rule: a response without both ``<think>`` and ``</think>`` is wrong;
otherwise the answer is the last ``\\boxed{...}`` in the text between the first ``</think>`` and the
next one (``split("</think>")[1]``). Comparing its extraction against ours, both judged by the same
math-verify equivalence, isolates the effect of the extraction rule.

``last-number`` is GSM8K's customary lenient rule (lm-evaluation-harness's "flexible-extract": the last
number in the response). A model that reasons in prose but never writes ``\\boxed{}`` (SmolLM2-135M-Instruct
before fine-tuning) scores 0 under the boxed rule; this rule tells a format failure from a wrong answer.
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def deepscaler_extract(response: str) -> str | None:
    """DeepScaleR's answer extraction (see the module docstring)."""
    if "<think>" not in response or "</think>" not in response:
        return None
    return last_boxed(response.split("</think>")[1])


def last_number(response: str) -> str | None:
    """The last number in the text, without ``$`` or thousands commas (``$1,200.50`` -> ``1200.50``)."""
    found = NUMBER.findall(response)
    return found[-1].replace("$", "").replace(",", "") if found else None


SECOND_GRADERS = {"deepscaler": deepscaler_extract, "last-number": last_number}
