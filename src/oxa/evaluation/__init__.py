"""Evaluation: pass@k, difficulty buckets, a second grader, and the `oxa eval` run."""

from oxa.evaluation.difficulty import bucket_edges, bucket_gains
from oxa.evaluation.graders import SECOND_GRADERS, deepscaler_extract, last_boxed, last_number
from oxa.evaluation.passk import k_values, mean_pass_at_k, pass_at_k
from oxa.evaluation.run import EvalConfig, average, benchmark_metrics, evaluate

__all__ = [
    "EvalConfig", "SECOND_GRADERS", "average", "benchmark_metrics", "bucket_edges", "bucket_gains",
    "deepscaler_extract", "evaluate", "k_values", "last_boxed", "last_number", "mean_pass_at_k", "pass_at_k",
]
