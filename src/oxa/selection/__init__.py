"""Choosing training subsets by perplexity: Gaussian-guided sampling (Algorithm 1) and its baselines.

Every method reads the same four columns from the records - PPL, the group key (one query), the
response length and the verifier's ``correct`` flag - and reduces to one rule: walk the candidates in
a method-specific order and keep each one unless its query already has ``max_per_query`` selections,
until ``n`` are kept. The walk is vectorised: the k-th appearance of a query in the order is kept iff
k < cap, which is what the per-record loop of the reference code decides one record at a time.

- ``gaussian`` (OXA_MLE): PPL bins of width ``w`` over ``[ppl_min, ppl_max]``; bin i gets
  ``T_i = floor(N p_i)`` (+1 for the largest remainders) with ``p_i`` the normal density at the bin
  centre normalised over the bins; bins are walked low to high PPL, longest responses first, and the
  per-query count is global across bins, exactly as Algorithm 1.
- ``lowest`` (SFT_LP), ``highest``, ``random`` (SFT), ``interval`` (PPL in [a, b], random order).
- ``errors`` (the UL set of OXA_Full): the lowest-PPL *incorrect* samples with PPL >= ``min_ppl``.

The CE methods keep only records the verifier marked ``correct == True`` when that field exists;
``errors`` keeps only ``correct == False``. Records without a finite PPL are dropped and counted.

Where each part lives:

- :mod:`oxa.selection.gaussian`   Algorithm 1 (targets per bin, the longest-first walk, redistribution)
- :mod:`oxa.selection.baselines`  lowest / highest / random / interval / errors
- :mod:`oxa.selection.walk`       the capped walk all methods share
- :mod:`oxa.selection.result`     the eligible pool and the :class:`Selection` with its histograms
- :mod:`oxa.selection.columns`    the input columns, from records or by Arrow from a file
- :mod:`oxa.selection.stage`      ``oxa select``: settings, dispatch, file in and out
- :mod:`oxa.binning`              the PPL bins (shared with :mod:`oxa.plots`)
"""

from oxa.binning import EDGE_TOLERANCE, Binning, display_binning
from oxa.selection.baselines import select_errors, select_highest, select_interval, select_lowest, select_random
from oxa.selection.columns import Columns, extract_columns, read_columns, read_rows
from oxa.selection.gaussian import GaussianPick, gaussian_pick, gaussian_targets, select_gaussian
from oxa.selection.result import Selection
from oxa.selection.stage import Method, SelectConfig, run_selection, select_file, side_paths
from oxa.selection.walk import occurrence_rank, seeded_order, take_capped

__all__ = [
    "EDGE_TOLERANCE", "Binning", "Columns", "GaussianPick", "Method", "SelectConfig", "Selection",
    "display_binning", "extract_columns", "gaussian_pick", "gaussian_targets", "occurrence_rank", "read_columns",
    "read_rows", "run_selection", "seeded_order", "select_errors", "select_file", "select_gaussian",
    "select_highest", "select_interval", "select_lowest", "select_random", "side_paths", "take_capped",
]
