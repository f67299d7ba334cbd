"""The synthetic math world: verifiable problems, a multi-strategy teacher, a step checker, a base model.

Everything the OXA pipeline needs to run end to end on a laptop CPU with no download, on a task where
every answer and every step can be checked. See :mod:`oxa.synth.world` for the data splits and
:mod:`oxa.synth.basemodel` for the pre-trained tiny base model.
"""

from oxa.synth.basemodel import QUICK_BASE, BaseModelConfig, build_base_model
from oxa.synth.checker import StepReport, check_steps
from oxa.synth.problems import FAMILIES, Problem, make_problem
from oxa.synth.teacher import STRATEGIES, Trajectory, corrupt, solve, strategies_for
from oxa.synth.world import WorldConfig, build_world, register_benchmarks, write_world

register_benchmarks()

__all__ = ["FAMILIES", "QUICK_BASE", "STRATEGIES", "BaseModelConfig", "Problem", "StepReport", "Trajectory",
           "WorldConfig", "build_base_model", "build_world", "check_steps", "corrupt", "make_problem",
           "register_benchmarks", "solve", "strategies_for", "write_world"]
