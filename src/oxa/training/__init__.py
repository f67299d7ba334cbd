"""OXA fine-tuning: CE on promoted data plus alpha * unlikelihood on suppressed errors (paper section 3.2).

``train(TrainConfig(...))`` is what `oxa train` runs; the pieces (composer, dataset, trainer, export) are
usable on their own.
"""

from oxa.training.config import METHODS, GeneralizedCEConfig, TrainConfig
from oxa.training.run import train

__all__ = ["METHODS", "GeneralizedCEConfig", "TrainConfig", "train"]
