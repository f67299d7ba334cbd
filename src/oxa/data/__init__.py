"""Data sets by name or spec, as records with ``id``, ``query`` and ``answer`` (evaluation, RL prompts).

* The OXA paper's six benchmarks (AIME24, AIME25, BRUMO25, CMIMC25, HMMT25, Minerva), MATH-500 and
  GSM8K test ship inside the package (:mod:`oxa.data.catalog`; sources and licenses in
  ``oxa/data/sets/README.md`` and in :func:`benchmark_info`);
* larger sets load through ``datasets`` from a hub spec ``hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`` or a
  local dataset directory, and any record file is read as it is (:mod:`oxa.data.sources`);
* rows with other column names map through :class:`oxa.records.Fields` (:mod:`oxa.data.fields`);
* other sets (the synthetic world's, for one) join with :func:`register_benchmark`.

``python -m oxa.data`` lists every name with its size, location, source and license.
"""

from oxa.data.catalog import PAPER_BENCHMARKS, SHIPPED, pack_shipped, shipped_rows
from oxa.data.fields import canonical, gsm8k_final_answer, strip_suffix
from oxa.data.registry import (DATA_DIR_ENV, BenchmarkLoader, DatasetInfo, benchmark_info, benchmark_key,
                               benchmark_names, data_file,
                               data_dir_candidates, load_benchmark, register_benchmark)
from oxa.data.sources import HubSpec, iter_rows, open_dataset, parse_hub_spec, spec_name

__all__ = ["DATA_DIR_ENV", "PAPER_BENCHMARKS", "SHIPPED", "BenchmarkLoader", "DatasetInfo", "HubSpec", "benchmark_info",
           "benchmark_key", "benchmark_names", "canonical", "data_dir_candidates", "data_file", "gsm8k_final_answer", "iter_rows",
           "load_benchmark", "open_dataset", "pack_shipped", "parse_hub_spec", "register_benchmark", "shipped_rows",
           "spec_name", "strip_suffix"]
