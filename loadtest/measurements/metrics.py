"""Prometheus text and histogram maths (pure).

Scrapes are kept as flat samples; counters and histograms are compared between two scrapes
(a window), and quantiles are interpolated within buckets as PromQL's histogram_quantile.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

# (name, sorted label items, value)
Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]


def parse(text: str, keep: Iterable[str] | None = None) -> list[Sample]:
    """Samples of the metric families named in `keep` (all when None)."""
    wanted = set(keep) if keep is not None else None
    out: list[Sample] = []
    for fam in text_string_to_metric_families(text):
        # the parser names a counter's family without its _total suffix
        if wanted is not None and fam.name not in wanted and f"{fam.name}_total" not in wanted:
            continue
        for s in fam.samples:
            out.append((s.name, tuple(sorted(s.labels.items())), float(s.value)))
    return out


def index(samples: Iterable[Sample]) -> dict[tuple[str, Labels], float]:
    return {(n, lb): v for n, lb, v in samples}


def increase(before: float, after: float) -> float:
    """A counter's increase; one that went down was reset (a restarted API server): its
    whole value counts, as Prometheus's rate() takes it."""
    return after - before if after >= before else after


def counter_delta(
    before: Mapping[tuple[str, Labels], float],
    after: Mapping[tuple[str, Labels], float],
    name: str,
    by: tuple[str, ...] = (),
) -> dict[tuple[str, ...], float]:
    """Increase of a counter between two scrapes, summed by the `by` labels.

    A series that went down was reset (a restarted API server): its whole value counts.
    """
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (n, lb), v in after.items():
        if n != name:
            continue
        d = increase(before.get((n, lb), 0.0), v)
        labels = dict(lb)
        out[tuple(labels.get(k, "") for k in by)] += d
    return dict(out)


def gauge(
    samples: Mapping[tuple[str, Labels], float], name: str, by: tuple[str, ...] = ()
) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (n, lb), v in samples.items():
        if n == name:
            labels = dict(lb)
            out[tuple(labels.get(k, "") for k in by)] += v
    return dict(out)


def histogram_delta(
    before: Mapping[tuple[str, Labels], float],
    after: Mapping[tuple[str, Labels], float],
    name: str,
    by: tuple[str, ...],
) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """Per group, the window's cumulative buckets [(le, count)], sorted by le."""
    deltas = counter_delta(before, after, f"{name}_bucket", by=(*by, "le"))
    groups: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for key, v in deltas.items():
        *g, le = key
        groups[tuple(g)][float(le)] = groups[tuple(g)].get(float(le), 0.0) + v
    return {g: sorted(b.items()) for g, b in groups.items()}


def merge_counts(parts: Iterable[Mapping[tuple[str, ...], float]]) -> dict[tuple[str, ...], float]:
    """Counter deltas (or gauges) of several servers, summed group by group."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for part in parts:
        for g, v in part.items():
            out[g] += v
    return dict(out)


def merge_histograms(
    parts: Iterable[Mapping[tuple[str, ...], list[tuple[float, float]]]],
) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """Histograms of several servers as one: cumulative counts summed bucket by bucket.

    Servers of one version share bucket bounds; where a server lacks a bound, its count at
    the next lower bound it has is used (cumulative buckets: a lower bound on the truth).
    """
    groups: dict[tuple[str, ...], list[list[tuple[float, float]]]] = defaultdict(list)
    for part in parts:
        for g, buckets in part.items():
            groups[g].append(buckets)
    out = {}
    for g, hists in groups.items():
        bounds = sorted({le for h in hists for le, _ in h})
        out[g] = [(le, sum(_cumulative_at(h, le) for h in hists)) for le in bounds]
    return out


def _cumulative_at(buckets: list[tuple[float, float]], le: float) -> float:
    at = 0.0
    for bound, n in buckets:
        if bound > le:
            break
        at = n
    return at


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile: linear interpolation inside the bucket holding rank q*count.

    None when the window saw no observation; the highest finite bound when the rank falls
    in the +Inf bucket (as PromQL does).
    """
    if not buckets or not 0 <= q <= 1:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def count(buckets: list[tuple[float, float]]) -> float:
    return buckets[-1][1] if buckets else 0.0
