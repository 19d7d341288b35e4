"""In-cluster DNS probes: names resolved at a fixed rate, and propagation of new Services.

Each probe records latency, rcode and timeouts; a name expected to exist that answers
NXDOMAIN or SERVFAIL, or does not answer, is an error. `expect_propagation(name)` starts a
clock that stops when the name first resolves: CoreDNS answers from an informer cache, so
when its watches stall, new Services are the first thing that silently breaks.

How the probe differs from a pod's resolver: it queries fully qualified names directly
(no ndots:5 search-list expansion) and has no client-side cache; CoreDNS's own `cache 30`
and `ttl 30` are in the path as in a real cluster.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode

from loadtest.measurements.base import Ticker
from loadtest.results import JsonlWriter, read_jsonl

CACHE_TTL_S = 30  # kubeadm's Corefile: `cache 30`, kubernetes `ttl 30`


@dataclass(frozen=True)
class ProbeName:
    name: str
    exists: bool = True  # False: NXDOMAIN is the right answer


def default_names(services: list[tuple[str, str]] | None = None) -> list[ProbeName]:
    """The API's own Service, a name that must not exist, and (namespace, service) pairs."""
    names = [ProbeName("kubernetes.default.svc.cluster.local."),
             ProbeName("does-not-exist.default.svc.cluster.local.", exists=False)]
    names += [ProbeName(f"{svc}.{ns}.svc.cluster.local.") for ns, svc in services or []]
    return names


class DnsProbe:
    name = "dns"

    def __init__(self, server: tuple[str, int], names: list[ProbeName], raw: Path,
                 rate_hz: float = 10.0, timeout_s: float = 2.0) -> None:
        if not names:
            raise ValueError("DNS probe needs at least one name")
        self.server = server
        self.names = names
        self.raw = raw
        self.timeout_s = timeout_s
        self.writer = JsonlWriter(raw)
        self._i = 0
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ticker = Ticker(1.0 / rate_hz, self._tick, "dns-probe")

    def start(self) -> None:
        self._ticker.start()

    def expect_propagation(self, name: str) -> None:
        """Start timing how long until `name` (just created) resolves."""
        with self._lock:
            self._pending[name] = time.time()
        self.writer.write({"t": time.time(), "event": "created", "name": name})

    def gather(self) -> dict[str, Any]:
        self._ticker.stop()
        with self._lock:
            for name, t0 in self._pending.items():  # never resolved: that is a finding
                self.writer.write({"t": time.time(), "event": "propagation", "name": name,
                                   "seconds": None, "waited_s": time.time() - t0})
        self.writer.close()
        return summarize(read_jsonl(self.raw))

    def _tick(self) -> None:
        probe = self.names[self._i % len(self.names)]
        self._i += 1
        rec = query(self.server, probe.name, self.timeout_s)
        rec["expect"] = "A" if probe.exists else "NXDOMAIN"
        rec["error"] = _is_error(rec, probe.exists)
        self.writer.write(rec)
        with self._lock:
            pending = list(self._pending.items())
        for name, t0 in pending:
            r = query(self.server, name, self.timeout_s)
            if r["rcode"] == "NOERROR" and r["answers"]:
                with self._lock:
                    self._pending.pop(name, None)
                self.writer.write({"t": time.time(), "event": "propagation", "name": name,
                                   "seconds": r["t"] - t0})


def query(server: tuple[str, int], name: str, timeout_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"t": time.time(), "name": name}
    try:
        msg = dns.query.udp(dns.message.make_query(name, "A"), server[0], port=server[1],
                            timeout=timeout_s)
        rec["rcode"] = dns.rcode.to_text(msg.rcode())
        rec["answers"] = [rr.to_text() for rrset in msg.answer for rr in rrset]
    except dns.exception.Timeout:
        rec["rcode"] = "TIMEOUT"
        rec["answers"] = []
    except OSError as e:
        rec["rcode"] = f"ERROR {e.__class__.__name__}"
        rec["answers"] = []
    rec["ms"] = (time.perf_counter() - t0) * 1000
    return rec


def _is_error(rec: dict[str, Any], exists: bool) -> bool:
    if exists:
        return not (rec["rcode"] == "NOERROR" and rec["answers"])
    return rec["rcode"] != "NXDOMAIN"


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency, error rate, per-name results, propagation, and a time series (pure)."""
    probes = [r for r in records if "rcode" in r and "expect" in r]
    if not probes:
        return {"error": "no DNS probe answered or was recorded"}
    answered = sorted(r["ms"] for r in probes if r["rcode"] not in ("TIMEOUT",)
                      and not r["rcode"].startswith("ERROR"))
    errors = [r for r in probes if r["error"]]
    props = [r for r in records if r.get("event") == "propagation"]
    by_name: dict[str, dict[str, int]] = {}
    for r in probes:
        d = by_name.setdefault(r["name"], {"count": 0, "errors": 0})
        d["count"] += 1
        d["errors"] += int(r["error"])
    t0 = probes[0]["t"]
    series: dict[int, dict[str, Any]] = {}
    for r in probes:
        b = series.setdefault(int((r["t"] - t0) // 5) * 5, {"n": 0, "errors": 0, "ms": []})
        b["n"] += 1
        b["errors"] += int(r["error"])
        b["ms"].append(r["ms"])
    return {
        "count": len(probes),
        "errors": len(errors),
        "error_rate": len(errors) / len(probes),
        "timeouts": sum(1 for r in probes if r["rcode"] == "TIMEOUT"),
        "rcodes": _tally(r["rcode"] for r in probes),
        "p50_ms": _pct(answered, 0.5),
        "p99_ms": _pct(answered, 0.99),
        "by_name": by_name,
        "propagation": [{"name": r["name"], "seconds": r["seconds"]} for r in props],
        "duration_s": probes[-1]["t"] - probes[0]["t"],
        "timeseries": [{"t": k, "qps": v["n"] / 5, "errors": v["errors"],
                        "p99_ms": _pct(sorted(v["ms"]), 0.99)}
                       for k, v in sorted(series.items())],
    }


def _pct(xs: list[float], q: float) -> float | None:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def _tally(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
