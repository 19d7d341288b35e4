"""Straight-line fits (pure): the growth laws of the sweep and the capacity model's
per-agent work rates share them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """y = intercept + slope * x, by least squares."""

    intercept: float
    slope: float
    r2: float | None

    def __call__(self, x: float) -> float:
        return self.intercept + self.slope * x


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line:
    if len(xs) < 2 or len(set(xs)) < 2:
        raise ValueError("a fit needs at least two distinct x values")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    line = Line(my - slope * mx, slope, None)
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - line(x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return Line(line.intercept, slope, 1 - ss_res / ss_tot if ss_tot > 0 and n > 2 else None)


def fit_nonnegative(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """Least squares with the intercept held at 0 or above: a cost at zero nodes cannot be
    negative, and noise on small sizes otherwise bends the law into nonsense."""
    line = fit_line(xs, ys)
    if line.intercept >= 0:
        return line
    slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    return Line(0.0, slope, None)
