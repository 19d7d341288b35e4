"""CoreDNS's own view, scraped through the run beside the API server's.

Every CoreDNS instance is scraped on its own: on kind each kube-dns pod's prometheus plugin
(:9153) and ready plugin (:8181, not ready while the kubernetes plugin has not synced)
through the API server's pod proxy, the pods listed again at each scrape (a rollout or a
scale changes them); on the local provider the endpoint in the Cluster handle. What it
answered (responses by rcode), how fast (request duration), from cache or not, and how its
kubernetes plugin fared against the API server (REST client requests by code).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from loadtest.clusters.base import Cluster, http_client
from loadtest.measurements import metrics
from loadtest.measurements.base import MeasurementSummary, Ticker
from loadtest.results import JsonlWriter, read_jsonl

FAMILIES = (
    "coredns_dns_requests_total",
    "coredns_dns_responses_total",
    "coredns_dns_request_duration_seconds",
    "coredns_cache_hits_total",
    "coredns_cache_misses_total",
    "coredns_kubernetes_rest_client_requests_total",
    "coredns_kubernetes_dns_programming_duration_seconds",
    "coredns_health_request_failures_total",
    "coredns_panics_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
)
SELECTOR = "k8s-app=kube-dns"
PODS = "/api/v1/namespaces/kube-system/pods"


class CorednsSummary(MeasurementSummary):
    """What `summarize` returns; nothing outside this module reads into it yet."""


class CorednsMetrics:
    name = "coredns"

    def __init__(self, cluster: Cluster, raw: Path, interval: float = 5.0) -> None:
        self.cluster = cluster
        self.raw = raw
        self.writer = JsonlWriter(raw)
        self._direct = cluster.metrics.get("coredns")
        self._client = (
            httpx.Client(timeout=10)
            if self._direct
            else http_client(cluster, timeout=max(interval * 2, 10))
        )
        self._ticker = Ticker(interval, self._scrape, "coredns-metrics")

    def start(self) -> None:
        self._scrape()
        self._ticker.start()

    def gather(self) -> dict[str, Any]:
        self._ticker.stop()
        self._scrape()
        self._client.close()
        self.writer.close()
        return summarize(read_jsonl(self.raw))

    def _targets(self) -> list[tuple[str, str, str | None]]:
        """(instance, metrics URL or path, ready path) of every CoreDNS to scrape."""
        if self._direct:
            return [("coredns", self._direct, None)]
        r = self._client.get(PODS, params={"labelSelector": SELECTOR})
        r.raise_for_status()
        return [
            (
                p["metadata"]["name"],
                f"{PODS}/{p['metadata']['name']}:9153/proxy/metrics",
                f"{PODS}/{p['metadata']['name']}:8181/proxy/ready",
            )
            for p in r.json()["items"]
            if p.get("status", {}).get("phase") == "Running"
        ]

    def _scrape(self) -> None:
        t = time.time()
        try:
            targets = self._targets()
        except Exception as e:  # noqa: BLE001 - the API server the load brought down
            self.writer.write(
                {"t": t, "error": f"listing CoreDNS pods: {type(e).__name__}: {e}"[:300]}
            )
            return
        if not targets:
            self.writer.write({"t": t, "error": "no CoreDNS pod running"})
        for name, url, ready_path in targets:
            t0 = time.monotonic()
            rec: dict[str, Any] = {"t": time.time(), "target": name}
            try:
                r = self._client.get(url)
                r.raise_for_status()
                rec["scrape_ms"] = (time.monotonic() - t0) * 1000
                rec["samples"] = [
                    [n, [list(p) for p in lb], v] for n, lb, v in metrics.parse(r.text, FAMILIES)
                ]
                if ready_path:
                    rec["ready"] = self._client.get(ready_path).status_code == 200
            except Exception as e:  # noqa: BLE001 - a failed scrape is data
                rec["scrape_ms"] = (time.monotonic() - t0) * 1000
                rec["error"] = f"{type(e).__name__}: {e}"[:300]
            self.writer.write(rec)


def _index(rec: dict[str, Any]) -> dict[tuple[str, metrics.Labels], float]:
    return {(n, tuple((k, v) for k, v in lb)): val for n, lb, val in rec["samples"]}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per CoreDNS instance and merged: responses by rcode, latency, cache, API access (pure)."""
    ok = [r for r in records if "samples" in r]
    failed = [r for r in records if "error" in r]
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        by_target[r["target"]].append(r)
    base = {
        "scrapes": len(ok),
        "failed_scrapes": len(failed),
        "no_instance_scrapes": sum(1 for r in failed if "target" not in r),
        "not_ready_scrapes": sum(1 for r in ok if r.get("ready") is False),
        "errors": sorted({r["error"] for r in failed})[:5],
    }
    if not ok:
        return {**base, "error": "no CoreDNS scrape succeeded"}
    rcodes: dict[str, float] = defaultdict(float)
    api_codes: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    totals: dict[str, float] = defaultdict(float)
    instances = []
    for name, rs in sorted(by_target.items()):
        first, last = _index(rs[0]), _index(rs[-1])
        d = {
            k: sum(metrics.counter_delta(first, last, k).values())
            for k in (
                "coredns_dns_requests_total",
                "coredns_cache_hits_total",
                "coredns_cache_misses_total",
                "coredns_health_request_failures_total",
                "coredns_panics_total",
                "process_cpu_seconds_total",
            )
        }
        for k, v in d.items():
            totals[k] += v
        for (rc,), v in metrics.counter_delta(
            first, last, "coredns_dns_responses_total", ("rcode",)
        ).items():
            rcodes[rc] += v
        for (code,), v in metrics.counter_delta(
            first, last, "coredns_kubernetes_rest_client_requests_total", ("code",)
        ).items():
            api_codes[code] += v
        for le, n in metrics.histogram_delta(
            first, last, "coredns_dns_request_duration_seconds", ()
        ).get((), []):
            buckets[le] += n
        starts = {metrics.gauge(_index(r), "process_start_time_seconds").get(()) for r in rs}
        starts.discard(None)
        instances.append(
            {
                "instance": name,
                "scrapes": len(rs),
                "seconds": rs[-1]["t"] - rs[0]["t"],
                "requests": d["coredns_dns_requests_total"],
                "cpu_seconds": d["process_cpu_seconds_total"],
                "rss_max_mib": max(
                    metrics.gauge(_index(r), "process_resident_memory_bytes").get((), 0.0)
                    for r in rs
                )
                / 2**20,
                "restarts": max(0, len(starts) - 1),
                "not_ready_scrapes": sum(1 for r in rs if r.get("ready") is False),
            }
        )
    merged = sorted(buckets.items())  # cumulative per instance, so cumulative summed per le
    hits, misses = totals["coredns_cache_hits_total"], totals["coredns_cache_misses_total"]
    p50, p99 = metrics.quantile(0.5, merged), metrics.quantile(0.99, merged)
    return {
        **base,
        "instances": instances,
        "requests": totals["coredns_dns_requests_total"],
        "responses_by_rcode": dict(sorted(rcodes.items())),
        "servfail_ratio": (
            rcodes.get("SERVFAIL", 0.0) / sum(rcodes.values()) if sum(rcodes.values()) else None
        ),
        "request_p50_ms": p50 * 1000 if p50 is not None else None,
        "request_p99_ms": p99 * 1000 if p99 is not None else None,
        "cache": {
            "hits": hits,
            "misses": misses,
            "hit_ratio": hits / (hits + misses) if hits + misses else None,
        },
        "kubernetes_api_requests_by_code": dict(sorted(api_codes.items())),
        "health_failures": totals["coredns_health_request_failures_total"],
        "panics": totals["coredns_panics_total"],
        "timeseries": _timeseries(by_target),
    }


def _timeseries(by_target: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per 5 s: answers per second and SERVFAILs per second, summed over instances."""
    t0 = min(rs[0]["t"] for rs in by_target.values())
    slots: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for rs in by_target.values():
        for a, b in zip(rs, rs[1:], strict=False):
            dt = b["t"] - a["t"]
            if dt <= 0:
                continue
            d = metrics.counter_delta(
                _index(a), _index(b), "coredns_dns_responses_total", ("rcode",)
            )
            s = slots[int((b["t"] - t0) // 5) * 5]
            s["rps"] += sum(d.values()) / dt
            s["servfail_rps"] += d.get(("SERVFAIL",), 0.0) / dt
            s["instances"] += 1
    return [{"t": k, **v} for k, v in sorted(slots.items())]
