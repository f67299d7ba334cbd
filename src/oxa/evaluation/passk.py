"""Pass@k, the unbiased estimator of Chen et al. (2021).

From n samples of which c are correct, the probability that at least one of k samples drawn without
replacement is correct is 1 - C(n-c, k) / C(n, k). The binomials overflow floats for n in the hundreds,
so it is computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i), which is the same ratio expanded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct out of ``n`` samples; ``k`` must not exceed ``n``."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}" if k > n else f"k must be >= 1, got {k}")
    if n - c < k:
        return 1.0  # every k-subset contains a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def k_values(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n``, and ``n`` itself (the paper's Pass@k is k = n)."""
    ks = [1 << e for e in range(n.bit_length()) if 1 << e <= n]
    return ks if ks[-1] == n else ks + [n]


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given as (n, c) pairs."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems")
    return sum(values) / len(values)
