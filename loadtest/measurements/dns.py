"""In-cluster DNS probes: names resolved at a fixed rate, and propagation of new Services.

Each probe records latency, rcode and timeouts; a name expected to exist that answers
NXDOMAIN or SERVFAIL, or does not answer, is an error. `expect_propagation(name)` starts a
clock that stops when the name first resolves: CoreDNS answers from an informer cache, so
when its watches stall, new Services are the first thing that silently breaks.

How the probe differs from a pod's resolver: it queries fully qualified names directly
(no ndots:5 search-list expansion) and has no client-side cache; CoreDNS's own `cache 30`
and `ttl 30` are in the path as in a real cluster. Like a pod's resolver (glibc's
`attempts:2`) it sends a query again when the first gets no answer, with a 2 s timeout per
attempt (glibc waits 5 s): a single lost datagram is not a failed lookup, two are.

The lookups are open-loop (openloop.py): one every 1/rate s whatever the answers, timed from
its scheduled time; a timed-out lookup counts at its timeout (both attempts) in the
quantiles. The pool is sized so that a server answering within one attempt's timeout never
leaves a slot unsent. Propagation checks are a separate periodic loop.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode

from loadtest.measurements import openloop
from loadtest.measurements.base import Num, Row, Ticker
from loadtest.measurements.openloop import OpenLoopSummary, tally
from loadtest.results import JsonlWriter, read_jsonl
from loadtest.stats import percentile

CACHE_TTL_S = 30  # kubeadm's Corefile: `cache 30`, kubernetes `ttl 30`
TIMEOUT_S = 2.0  # per attempt
ATTEMPTS = 2


@dataclass(frozen=True)
class ProbeName:
    name: str
    exists: bool = True  # False: NXDOMAIN is the right answer


def default_names(services: list[tuple[str, str]] | None = None) -> list[ProbeName]:
    """The API's own Service, a name that must not exist, and (namespace, service) pairs."""
    names = [
        ProbeName("kubernetes.default.svc.cluster.local."),
        ProbeName("does-not-exist.default.svc.cluster.local.", exists=False),
    ]
    names += [ProbeName(f"{svc}.{ns}.svc.cluster.local.") for ns, svc in services or []]
    return names


class DnsProbe:
    """Runs the probe loop in its own process: a Python thread beside the metrics scraper
    would wait on the GIL and report the harness's own pauses as DNS latency. The process
    can also be started inside a node's network namespace (`netns_pid`), where the cluster
    DNS Service address is reachable."""

    name = "dns"

    def __init__(
        self,
        server: tuple[str, int],
        names: list[ProbeName],
        raw: Path,
        rate_hz: float = 10.0,
        timeout_s: float = TIMEOUT_S,
        netns_pid: int | None = None,
    ) -> None:
        if not names:
            raise ValueError("DNS probe needs at least one name")
        self.raw = raw
        self.cmd = [
            sys.executable,
            "-m",
            "loadtest.measurements.dns",
            "--server",
            f"{server[0]}:{server[1]}",
            "--rate",
            str(rate_hz),
            "--timeout",
            str(timeout_s),
            "--out",
            str(raw),
        ]
        for n in names:
            self.cmd += ["--name" if n.exists else "--missing", n.name]
        if netns_pid is not None:
            self.cmd = ["nsenter", "-t", str(netns_pid), "-n", *self.cmd]
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.raw.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2]
        )

    def expect_propagation(self, name: str) -> None:
        """Start timing how long until `name` (just created) resolves."""
        self._send(f"expect {name}")

    def gather(self) -> dict[str, Any]:
        if self._proc is not None:
            self._send("stop")
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return summarize(read_jsonl(self.raw))

    def _send(self, line: str) -> None:
        if self._proc and self._proc.stdin and self._proc.poll() is None:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()


class _ProbeLoop:
    """The probe itself: slot k looks up name k mod len(names); the names awaited are checked
    on a periodic loop of their own."""

    def __init__(
        self,
        server: tuple[str, int],
        names: list[ProbeName],
        raw: Path,
        rate_hz: float,
        timeout_s: float,
        workers: int = 0,
    ) -> None:
        self.server = server
        self.names = names
        self.timeout_s = timeout_s
        self.writer = JsonlWriter(raw)
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self.lookups = openloop.OpenLoop(
            rate_hz,
            self._send,
            self.writer.write,
            timeout_s=ATTEMPTS * timeout_s,
            workers=workers or openloop.pool_size(rate_hz, ATTEMPTS * timeout_s),
            describe=self._describe,
            info={"server": f"{server[0]}:{server[1]}", "attempts": ATTEMPTS},
            name="dns-probe",
        )
        self.propagation = Ticker(1.0 / rate_hz, self._check_pending, "dns-propagation")

    def start(self) -> None:
        self.lookups.start()
        self.propagation.start()

    def expect(self, name: str) -> None:
        with self._lock:
            self._pending[name] = time.time()
        self.writer.write({"t": time.time(), "event": "created", "name": name})

    def stop(self) -> None:
        self.propagation.stop()
        self.lookups.stop()
        with self._lock:
            for name, t0 in self._pending.items():  # never resolved: that is a finding
                self.writer.write(
                    {
                        "t": time.time(),
                        "event": "propagation",
                        "name": name,
                        "seconds": None,
                        "waited_s": time.time() - t0,
                    }
                )
        self.writer.close()

    def _describe(self, k: int) -> dict[str, Any]:
        p = self.names[k % len(self.names)]
        return {"name": p.name, "expect": "A" if p.exists else "NXDOMAIN"}

    def _send(self, k: int) -> dict[str, Any]:
        p = self.names[k % len(self.names)]
        rec = query(self.server, p.name, self.timeout_s)
        return {
            "rcode": rec["rcode"],
            "answers": rec["answers"],
            "attempts": rec["attempts"],
            "cause": _cause(rec, p.exists),
        }

    def _check_pending(self) -> None:
        with self._lock:
            pending = list(self._pending.items())
        for name, t0 in pending:
            r = query(self.server, name, self.timeout_s)
            if r["rcode"] == "NOERROR" and r["answers"]:
                with self._lock:
                    self._pending.pop(name, None)
                self.writer.write(
                    {"t": time.time(), "event": "propagation", "name": name, "seconds": r["t"] - t0}
                )


def main(argv: list[str] | None = None) -> int:
    """The probe process: commands on stdin ("expect NAME", "stop"); bounded by --max-s."""
    ap = argparse.ArgumentParser(prog="loadtest-dns-probe")
    ap.add_argument("--server", required=True, help="HOST:PORT")
    ap.add_argument("--name", action="append", default=[], help="a name that must resolve")
    ap.add_argument("--missing", action="append", default=[], help="a name that must not")
    openloop.add_probe_args(ap, 10.0, TIMEOUT_S, "seconds per attempt")
    a = ap.parse_args(argv)
    host, _, port = a.server.rpartition(":")
    names = [ProbeName(n) for n in a.name] + [ProbeName(n, exists=False) for n in a.missing]
    loop = _ProbeLoop((host, int(port)), names, a.out, a.rate, a.timeout, a.workers)
    loop.start()
    stop = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "expect" and arg:
                loop.expect(arg)
            elif cmd == "stop":
                break
        stop.set()  # EOF: the harness is gone, so stop too

    threading.Thread(target=commands, daemon=True).start()
    stop.wait(a.max_s)
    loop.stop()
    return 0


def query(
    server: tuple[str, int], name: str, timeout_s: float, attempts: int = ATTEMPTS
) -> dict[str, Any]:
    """One lookup as a resolver makes it: a query, sent again on no answer; the latency is
    what the caller waited in all."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"t": time.time(), "name": name}
    for attempt in range(1, attempts + 1):
        rec["attempts"] = attempt
        try:
            msg = dns.query.udp(
                dns.message.make_query(name, "A"), server[0], port=server[1], timeout=timeout_s
            )
            rec["rcode"] = dns.rcode.to_text(msg.rcode())
            rec["answers"] = [rr.to_text() for rrset in msg.answer for rr in rrset]
            break
        except dns.exception.Timeout:
            rec["rcode"] = "TIMEOUT"
            rec["answers"] = []
        except OSError as e:
            rec["rcode"] = f"ERROR {e.__class__.__name__}"
            rec["answers"] = []
            break
    rec["ms"] = (time.perf_counter() - t0) * 1000
    return rec


def _cause(rec: dict[str, Any], exists: bool) -> str | None:
    """None for the right answer; else why not: timeout, transport or the wrong rcode."""
    rcode = rec["rcode"]
    if rcode == "TIMEOUT":
        return openloop.TIMEOUT
    if rcode.startswith("ERROR"):
        return openloop.TRANSPORT
    if exists:
        return None if rcode == "NOERROR" and rec["answers"] else f"rcode {rcode}"
    return None if rcode == "NXDOMAIN" else f"rcode {rcode}"


def _upgrade(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of the closed-loop probe of before (no scheduled times) read as before: one
    slot each, at its own time; what a stall held back was never recorded."""
    if any("k" in r or r.get("event") in ("start", "stop") for r in records):
        return records
    lookups = [r for r in records if "rcode" in r and "expect" in r]
    return [
        {**r, "k": i, "sched": r["t"], "cause": _cause(r, r["expect"] == "A")}
        for i, r in enumerate(lookups)
    ] + [r for r in records if "event" in r]


class NameCount(Row):
    scheduled: int = 0
    failed: int = 0


class Propagation(Row):
    name: str = ""
    seconds: Num | None = None  # None: never resolved


class DnsSummary(OpenLoopSummary):
    """What `summarize` returns, with the run's `where` and `propagation_error`."""

    error_rate: Num = 0
    by_name: dict[str, NameCount] = {}
    propagation: list[Propagation] = []
    propagation_error: str | None = None  # the probe Service could not be made
    timeseries: list[dict[str, Any]] = []


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every scheduled lookup's outcome and latency from schedule (timeouts and unsent
    lookups at the timeout), per-name results, propagation, a time series (pure)."""
    s = openloop.read_slots(_upgrade(records), ATTEMPTS * TIMEOUT_S)
    if not s.slots:
        return {"error": "no DNS probe answered or was recorded"}
    out = openloop.summarize_slots(s)
    by_name: dict[str, dict[str, int]] = {}
    for r in s.slots:
        d = by_name.setdefault(r.get("name", "?"), {"scheduled": 0, "failed": 0})
        d["scheduled"] += 1
        d["failed"] += r["cause"] is not None
    t0 = s.slots[0]["sched"]
    series: dict[int, list[dict[str, Any]]] = {}
    for r in s.slots:
        series.setdefault(int((r["sched"] - t0) // 5) * 5, []).append(r)
    props = [r for r in records if r.get("event") == "propagation"]
    return {
        **out,
        "error_rate": out["failed"] / out["scheduled"],
        # lookups that needed their second attempt (a lost datagram, or an overloaded server)
        "retried": sum(1 for r in s.slots if (r.get("attempts") or 1) > 1),
        "rcodes": tally(r["rcode"] for r in s.slots if "rcode" in r),
        "by_name": by_name,
        "propagation": [{"name": r["name"], "seconds": r["seconds"]} for r in props],
        "duration_s": s.slots[-1]["sched"] - t0,
        "timeseries": [
            {
                "t": k,
                "qps": len(v) / 5,
                "failed": sum(r["cause"] is not None for r in v),
                "p99_ms": percentile([s.value_ms(r) for r in v], 0.99),
            }
            for k, v in sorted(series.items())
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
