"""The project's one percentile of raw samples (histogram quantiles: measurements/metrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile: the smallest sample with at least a share `q` (0..1) of
    the samples at or below it, i.e. the ceil(q*n)-th smallest (q=0: the minimum). A value
    that was measured, never an interpolation (as HdrHistogram reports). None for no samples;
    `xs` need not be sorted."""
    if not 0 <= q <= 1:
        raise ValueError(f"percentile: q must be within 0..1, got {q}")
    if not xs:
        return None
    s = sorted(xs)
    rank = math.ceil(round(q * len(s), 9))  # round: 0.07 * 100 is 7.000000000000001
    return s[max(1, rank) - 1]
