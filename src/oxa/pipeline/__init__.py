"""One pipeline for the whole OXA recipe: recipes (:mod:`.recipe`), stage kinds (:mod:`.kinds`,
:mod:`.stages`), the engine that runs and resumes stages (:mod:`.engine`) and ``oxa run`` (:mod:`.run`)."""

from oxa.pipeline.engine import Step, run_steps
from oxa.pipeline.kinds import StageContext, StageKind, stage_kind

__all__ = ["StageContext", "StageKind", "Step", "run_steps", "stage_kind"]
