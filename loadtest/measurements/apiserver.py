"""The API server's own view: /metrics scraped at a fixed interval through the run.

The harness scrapes with its own (break-glass) identity: system:masters lands in APF's
exempt level, so it keeps seeing the API server while agents are throttled; the scrape's own
latency and failures are recorded and reported as the harness's access.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loadtest import metrics
from loadtest.clusters.base import Cluster, http_client
from loadtest.measurements.base import Ticker
from loadtest.results import JsonlWriter, read_jsonl
from loadtest.stats import percentile

FAMILIES = (
    "apiserver_request_duration_seconds",
    "apiserver_request_sli_duration_seconds",
    "apiserver_request_total",
    "apiserver_current_inflight_requests",
    "apiserver_longrunning_requests",
    "apiserver_flowcontrol_rejected_requests",
    "apiserver_flowcontrol_current_inqueue_requests",
    "apiserver_flowcontrol_request_wait_duration_seconds",
    "apiserver_flowcontrol_current_executing_seats",
    "apiserver_flowcontrol_dispatched_requests",
    "apiserver_flowcontrol_nominal_limit_seats",
    "apiserver_response_sizes",
    "etcd_request_duration_seconds",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
)
LATENCY_BY = ("verb", "resource", "scope")


class ApiserverMetrics:
    name = "apiserver"

    def __init__(self, cluster: Cluster, raw: Path, interval: float = 5.0) -> None:
        self.cluster = cluster
        self.raw = raw
        self.writer = JsonlWriter(raw)
        self._client = http_client(cluster, timeout=max(interval * 2, 10))
        self._ticker = Ticker(interval, self._scrape, "apiserver-metrics")
        self._last: dict[tuple[str, tuple], float] = {}

    def start(self) -> None:
        self._scrape()  # a baseline before any load
        self._ticker.start()

    def gather(self) -> dict[str, Any]:
        self._ticker.stop()
        self._scrape()
        self._client.close()
        self.writer.close()
        return summarize(read_jsonl(self.raw))

    def _scrape(self) -> None:
        t0 = time.monotonic()
        try:
            r = self._client.get("/metrics")
            r.raise_for_status()
            # the API server's answer time only: parsing below is the harness's own CPU
            scrape_ms = (time.monotonic() - t0) * 1000
            samples = metrics.parse(r.text, FAMILIES)
        except Exception as e:  # noqa: BLE001 - recorded, type and all; raising would end the sampler
            self.writer.write({"t": time.time(), "scrape_ms": (time.monotonic() - t0) * 1000,
                               "error": f"{type(e).__name__}: {e}"[:300]})
            return
        # Only series that changed since the last scrape: most do not, and a full scrape of
        # the latency histograms is megabytes. `expand` restores full scrapes.
        changed = [[n, [list(p) for p in lb], v] for n, lb, v in samples
                   if self._last.get((n, lb)) != v]
        self._last = {(n, lb): v for n, lb, v in samples}
        self.writer.write({"t": time.time(), "scrape_ms": scrape_ms, "changed": changed})


def expand(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn the stream of changed series back into full scrapes ("samples" as an index)."""
    state: dict[tuple[str, metrics.Labels], float] = {}
    out = []
    for r in records:
        if "changed" not in r:
            out.append(r)
            continue
        for n, lb, v in r["changed"]:
            state[(n, tuple((k, val) for k, val in lb))] = v
        out.append({"t": r["t"], "scrape_ms": r["scrape_ms"], "samples": dict(state)})
    return out


def _index(rec: dict[str, Any]) -> dict[tuple[str, metrics.Labels], float]:
    samples: dict[tuple[str, metrics.Labels], float] = rec["samples"]
    return samples


def summarize(records: list[dict[str, Any]], window_s: float = 300.0) -> dict[str, Any]:
    """Everything the SLOs and the report need, from the raw scrape stream (pure)."""
    records = expand(records)
    ok = [r for r in records if "samples" in r]
    failed = [r for r in records if "error" in r]
    access = _access(records, failed)
    if len(ok) < 2:
        return {"error": f"fewer than two successful scrapes ({len(ok)} of {len(records)})",
                "harness_access": access}
    first, last = _index(ok[0]), _index(ok[-1])
    codes = metrics.counter_delta(first, last, "apiserver_request_total", ("code",))
    total = sum(codes.values())
    by_verb = metrics.counter_delta(first, last, "apiserver_request_total",
                                    ("verb", "resource", "code"))
    return {
        "duration_s": ok[-1]["t"] - ok[0]["t"],
        "scrapes": len(ok),
        "requests": {"total": total,
                     "by_code": {k[0]: v for k, v in codes.items()},
                     "throttled_429": codes.get(("429",), 0.0),
                     "errors_5xx": sum(v for (c,), v in codes.items() if c.startswith("5")),
                     "by_verb_resource": [{"verb": v, "resource": r, "code": c, "count": n}
                                          for (v, r, c), n in sorted(by_verb.items()) if n]},
        "latency": _latency(ok, window_s),
        "response_bytes": _response_bytes(first, last),
        "apf": _apf(ok, first, last),
        "etcd": _quantiles(first, last, "etcd_request_duration_seconds", ("operation", "type")),
        "watches_max": max((metrics.gauge(_index(r), "apiserver_longrunning_requests",
                                          ("verb",)).get(("WATCH",), 0.0) for r in ok),
                           default=0.0),
        "inflight_max": max((sum(metrics.gauge(_index(r), "apiserver_current_inflight_requests")
                                 .values()) for r in ok), default=0.0),
        "process": _process(ok, first, last),
        "timeseries": _timeseries(ok),
        "harness_access": access,
    }


def _access(records: list[dict[str, Any]], failed: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [r["scrape_ms"] for r in records]
    worst = max(lat, default=None)
    return {"scrapes": len(records), "failed": len(failed),
            "scrape_ms_p50": percentile(lat, 0.5),
            "scrape_ms_max": worst,
            # the break-glass path is what an operator would use to roll back
            "degraded": bool(failed) or (worst is not None and worst > 5000),
            "errors": [r["error"] for r in failed[:5]]}


def _latency(ok: list[dict[str, Any]], window_s: float) -> list[dict[str, Any]]:
    """p50/p99 by verb, resource, scope over the run, and the worst p99 of any window."""
    first, last = _index(ok[0]), _index(ok[-1])
    out = []
    for metric in ("apiserver_request_sli_duration_seconds",
                   "apiserver_request_duration_seconds"):
        whole = metrics.histogram_delta(first, last, metric, LATENCY_BY)
        windows = _windows(ok, window_s)
        worst: dict[tuple[str, ...], float] = {}
        for a, b in windows:
            for g, buckets in metrics.histogram_delta(a, b, metric, LATENCY_BY).items():
                q = metrics.quantile(0.99, buckets)
                if q is not None:
                    worst[g] = max(worst.get(g, 0.0), q)
        for (verb, resource, scope), buckets in sorted(whole.items()):
            n = metrics.count(buckets)
            if n <= 0:
                continue
            out.append({"metric": metric, "verb": verb, "resource": resource, "scope": scope,
                        "count": n, "p50": metrics.quantile(0.5, buckets),
                        "p99": metrics.quantile(0.99, buckets),
                        "p99_worst_window": worst.get((verb, resource, scope))})
    return out


def _windows(ok: list[dict[str, Any]], window_s: float) -> list[tuple[dict, dict]]:
    """Consecutive windows of about window_s (the whole run when it is shorter)."""
    out, start = [], ok[0]
    for rec in ok[1:]:
        if rec["t"] - start["t"] >= window_s:
            out.append((_index(start), _index(rec)))
            start = rec
    if start is not ok[-1] or not out:
        out.append((_index(start), _index(ok[-1])))
    return out


def _quantiles(first: dict, last: dict, metric: str,
               by: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for g, buckets in sorted(metrics.histogram_delta(first, last, metric, by).items()):
        if metrics.count(buckets) > 0:
            out.append({**dict(zip(by, g, strict=True)), "count": metrics.count(buckets),
                        "p50": metrics.quantile(0.5, buckets),
                        "p99": metrics.quantile(0.99, buckets)})
    return out


def _apf(ok: list[dict[str, Any]], first: dict, last: dict) -> dict[str, Any]:
    rejected = metrics.counter_delta(first, last, "apiserver_flowcontrol_rejected_requests_total",
                                     ("priority_level", "flow_schema", "reason"))
    inqueue_max: dict[str, float] = {}
    seats_max: dict[str, float] = {}
    for rec in ok:
        idx = _index(rec)
        for (pl,), v in metrics.gauge(idx, "apiserver_flowcontrol_current_inqueue_requests",
                                      ("priority_level",)).items():
            inqueue_max[pl] = max(inqueue_max.get(pl, 0.0), v)
        for (pl,), v in metrics.gauge(idx, "apiserver_flowcontrol_current_executing_seats",
                                      ("priority_level",)).items():
            seats_max[pl] = max(seats_max.get(pl, 0.0), v)
    dispatched = metrics.counter_delta(
        first, last, "apiserver_flowcontrol_dispatched_requests_total",
        ("priority_level", "flow_schema"))
    nominal = metrics.gauge(last, "apiserver_flowcontrol_nominal_limit_seats",
                            ("priority_level",))
    return {
        # the server's concurrency, split by level (what a mitigation's share is taken of)
        "nominal_limit_seats": {pl: v for (pl,), v in sorted(nominal.items())},
        # who the API server served: which identity's flow schema took the seats
        "dispatched": [{"priority_level": p, "flow_schema": f, "count": n}
                       for (p, f), n in sorted(dispatched.items(), key=lambda kv: -kv[1])
                       if n],
        "rejected": [{"priority_level": p, "flow_schema": f, "reason": r, "count": n}
                     for (p, f, r), n in sorted(rejected.items()) if n],
        "rejected_total": sum(rejected.values()),
        "inqueue_max": {k: v for k, v in inqueue_max.items() if v},
        "executing_seats_max": {k: v for k, v in seats_max.items() if v},
        "wait": _quantiles(first, last, "apiserver_flowcontrol_request_wait_duration_seconds",
                           ("priority_level", "execute")),
    }


def _response_bytes(first: dict, last: dict) -> list[dict[str, Any]]:
    """What the API server sent, by verb, resource and scope, largest first."""
    by = ("verb", "resource", "scope")
    total = metrics.counter_delta(first, last, "apiserver_response_sizes_sum", by)
    count = metrics.counter_delta(first, last, "apiserver_response_sizes_count", by)
    return [{"verb": v, "resource": r, "scope": sc, "bytes": b, "responses": count.get(k, 0),
             "mean_bytes": b / count[k] if count.get(k) else None}
            for k, b in sorted(total.items(), key=lambda kv: -kv[1]) if b
            for v, r, sc in [k]]


def _process(ok: list[dict[str, Any]], first: dict, last: dict) -> dict[str, Any]:
    cpu = metrics.counter_delta(first, last, "process_cpu_seconds_total").get((), 0.0)
    rss = max((metrics.gauge(_index(r), "process_resident_memory_bytes").get((), 0.0)
               for r in ok), default=0.0)
    dur = ok[-1]["t"] - ok[0]["t"]
    return {"cpu_seconds": cpu, "cpu_cores_avg": cpu / dur if dur > 0 else None,
            "rss_max_mib": rss / 2**20}


def _timeseries(ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scrape interval: rates and the interval's LIST p99, for plots."""
    out = []
    t0 = ok[0]["t"]
    for a, b in zip(ok, ok[1:], strict=False):
        ia, ib = _index(a), _index(b)
        dt = b["t"] - a["t"]
        if dt <= 0:
            continue
        codes = metrics.counter_delta(ia, ib, "apiserver_request_total", ("code",))
        lists = metrics.histogram_delta(ia, ib, "apiserver_request_duration_seconds", ("verb",))
        cpu = metrics.counter_delta(ia, ib, "process_cpu_seconds_total").get((), 0.0)
        rejected = sum(metrics.counter_delta(
            ia, ib, "apiserver_flowcontrol_rejected_requests_total").values())
        out.append({
            "t": round(b["t"] - t0, 2),
            "rps": sum(codes.values()) / dt,
            "throttled_rps": codes.get(("429",), 0.0) / dt,
            "errors_5xx_rps": sum(v for (c,), v in codes.items() if c.startswith("5")) / dt,
            "apf_rejected_rps": rejected / dt,
            "cpu_cores": cpu / dt,
            "list_p99_s": metrics.quantile(0.99, lists.get(("LIST",), [])),
            "inflight": sum(metrics.gauge(ib, "apiserver_current_inflight_requests").values()),
        })
    return out
