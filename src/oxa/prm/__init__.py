"""Process reward models: steps, per-step scores, the first error, correctors and group diversity (SCOPE).

* :mod:`oxa.prm.steps`: split a response into steps with character offsets;
* :mod:`oxa.prm.base`: the :class:`PRM` interface and :func:`judge` (scores -> first error);
* :mod:`oxa.prm.checker`, :mod:`oxa.prm.hf`: the synthetic world's exact checker, and transformers PRMs
  in the Qwen2.5-Math-PRM (separator) and Math-Shepherd (step tag) styles; :func:`load_prm` picks one;
* :mod:`oxa.prm.bench`: ProcessBench-style measurement on the synthetic world's planted errors;
* :mod:`oxa.prm.stage`: ``oxa steps`` (:func:`annotate_steps_file`);
* :mod:`oxa.prm.train`, :mod:`oxa.prm.tiny`: train a separator-style PRM, build a tiny one;
* :mod:`oxa.prm.correct`: locate the first error and rewrite that step (teacher or any model);
* :mod:`oxa.prm.diversity`: distinct answers and reasoning paths per group.
"""

from oxa.prm.base import DEFAULT_THRESHOLD, PRM, Judgement, StepInput, judge
from oxa.prm.bench import BenchReport, measure_on_planted, planted_records, processbench_report, stepwise_records
from oxa.prm.checker import CheckerPRM
from oxa.prm.correct import (
    CorrectionRequest, Corrector, CorrectorConfig, ModelCorrector, Salvage, TeacherCorrector, apply_corrections,
    encode_salvage, locate_errors, prm_verifier_agreement,
)
from oxa.prm.diversity import (
    GroupDiversity, diversity_metrics, final_answer, group_diversity, step_results, synthetic_group_diversity,
    synthetic_strategy,
)
from oxa.prm.hf import SeparatorPRM, StepTagPRM
from oxa.prm.load import PRMConfig, load_prm
from oxa.prm.stage import StepsConfig, StepsSummary, annotate_steps_file
from oxa.prm.steps import Step, Steps, StepSplit, first_below, join_steps, split_steps
from oxa.prm.train import PRMTrainConfig, train_prm

__all__ = [
    "BenchReport", "CheckerPRM", "CorrectionRequest", "Corrector", "CorrectorConfig", "DEFAULT_THRESHOLD",
    "GroupDiversity", "Judgement", "ModelCorrector", "PRM", "PRMConfig", "PRMTrainConfig", "Salvage", "SeparatorPRM",
    "Step", "StepInput", "StepSplit", "StepTagPRM", "Steps", "StepsConfig", "StepsSummary", "TeacherCorrector",
    "annotate_steps_file", "apply_corrections", "diversity_metrics", "encode_salvage", "final_answer", "first_below",
    "group_diversity", "join_steps", "judge", "load_prm", "locate_errors", "measure_on_planted", "planted_records",
    "prm_verifier_agreement", "processbench_report", "split_steps", "step_results", "stepwise_records",
    "synthetic_group_diversity", "synthetic_strategy", "train_prm",
]
