"""oxa: offline exploration-aware fine-tuning for math-reasoning language models."""

__version__ = "0.1.0"
