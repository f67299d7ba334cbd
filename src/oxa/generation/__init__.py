"""Sampling responses from a model: batched transformers sampling everywhere, vLLM where installed.

``generate_records`` is the library entry point; ``generate_file`` is what ``oxa generate`` runs.
"""

from oxa.generation.generate import generate_records, sample_record
from oxa.generation.sampling import SamplingParams, sample_seed
from oxa.generation.stage import GenerateConfig, SamplingConfig, generate_file, make_backend
from oxa.generation.transformers_backend import TransformersBackend
from oxa.generation.types import Job, Sampled
from oxa.generation.vllm_backend import VLLMBackend, vllm_available

__all__ = [
    "GenerateConfig", "Job", "Sampled", "SamplingConfig", "SamplingParams", "TransformersBackend", "VLLMBackend",
    "generate_file", "generate_records", "make_backend", "sample_record", "sample_seed", "vllm_available",
]
