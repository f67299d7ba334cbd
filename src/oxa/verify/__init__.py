"""Grade model answers against gold answers: the paper's RL reward, safe to run on millions of records.

The answer a response commits to is the last ``\\boxed{}`` in the text after the last ``</think>``
(:func:`extract_answer`). It is compared with the gold answer(s) by math-verify, gold first
(``verify(gold, pred)`` is not symmetric). Each graded item gets one of the :data:`STATUSES`.

Where each part lives:

- :mod:`oxa.verify.extract`  the answer of a response; normalised answers and golds
- :mod:`oxa.verify.grade`    one answer against its golds; the statuses and their summary
- :mod:`oxa.verify.pool`     worker processes with a hard per-item deadline (hangs in sympy's C code)
- :mod:`oxa.verify.batch`    many responses: each distinct pair once, a string-speed shortcut, the pool
- :mod:`oxa.verify.stage`    records and files: ``verify_records`` and the resumable ``oxa verify``
"""

from oxa.verify.batch import grade_many
from oxa.verify.extract import THINK_CLOSE, THINK_OPEN, Gold, answer_region, extract_answer, gold_answers, normalize_answer
from oxa.verify.grade import STATUSES, Status, Task, Verdict, grade_answer, quick_status, summarize
from oxa.verify.pool import GradingPool
from oxa.verify.stage import VerifyConfig, summary_path, verify_file, verify_records

__all__ = [
    "STATUSES", "THINK_CLOSE", "THINK_OPEN", "Gold", "GradingPool", "Status", "Task", "Verdict", "VerifyConfig",
    "answer_region", "extract_answer", "gold_answers", "grade_answer", "grade_many", "normalize_answer",
    "quick_status", "summarize", "summary_path", "verify_file", "verify_records",
]
