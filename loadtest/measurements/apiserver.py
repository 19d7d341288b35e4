"""The API servers' own view: /metrics of every API server, scraped at a fixed interval.

A control plane may run several API servers behind a load balancer (kind's ha.yaml, every
production cluster): a scrape through it lands on the next server in turn and mixes their
counters. So the servers are discovered as Prometheus's endpoints discovery does, from the
EndpointSlices of the `kubernetes` Service in `default`, and each is scraped directly at
https://IP:PORT. The raw stream keeps every server's series apart (a server id per record);
the summary merges them for the SLOs (counters summed, histograms summed bucket by bucket)
and reports CPU, memory, restarts and outages per server. Discovery runs again every
`rediscover_s` through the cluster's URL: servers that appear are added, and a server that
leaves the endpoints keeps being scraped (a dead server's failures are its outage). When no
discovered server can be reached, the cluster's URL is scraped and the summary says so.

The harness scrapes with its own (break-glass) identity: system:masters lands in APF's
exempt level, so it keeps seeing the API servers while agents are throttled; the scrapes'
latency and failures are recorded and reported as the harness's access. What goes wrong in
the harness itself (a /metrics text it cannot parse, a bug in a summary) is counted apart,
as `harness_errors`: it is not the API server's failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from loadtest.clusters.base import Cluster, http_client
from loadtest.measurements import metrics
from loadtest.measurements.base import MeasurementSummary, Num, Row, Ticker
from loadtest.results import JsonlWriter, read_jsonl
from loadtest.stats import percentile

# --- the summary as the run record holds it (what its readers use is typed) -----------------


class LatencyRow(Row):
    """One verb, resource and scope of one latency histogram (seconds)."""

    metric: str = ""
    verb: str = ""
    resource: str = ""
    scope: str = ""
    count: Num = 0
    p99: Num | None = None
    p99_worst_window: Num | None = None  # the worst 5-minute window, as the SLOs read it

    @property
    def p99_judged(self) -> Num:
        """The p99 an SLO judges: the worst window's, else the run's."""
        return self.p99_worst_window or self.p99 or 0


class Requests(Row):
    """Request counts over the run, by outcome (apiserver_request_total)."""

    total: Num = 0
    throttled_429: Num = 0
    errors_5xx: Num = 0


class ServerAccess(Row):
    scrapes: int = 0
    failed: int = 0
    outages: list[list[Num]] = []


class HarnessAccess(Row):
    """How the harness reached the servers; `failed` counts the servers' failures only."""

    scrapes: int = 0
    failed: int = 0
    degraded: bool | None = None
    errors: list[str] = []
    by_server: dict[str, ServerAccess] = {}


class Apf(Row):
    """API Priority and Fairness, by priority level (rows as dicts: priority_level, ...)."""

    nominal_limit_seats: dict[str, Num] = {}
    executing_seats_max: dict[str, Num] = {}
    inqueue_max: dict[str, Num] = {}
    dispatched: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    wait: list[dict[str, Any]] = []


class Process(Row):
    cpu_cores_avg: Num | None = None
    rss_max_mib: Num | None = None


class ApiServerSummary(MeasurementSummary):
    """What `summarize` returns; a field missing from the JSON is left out when written."""

    origin_t: Num | None = None  # epoch of the first scrape: the timeseries' zero
    harness_access: HarnessAccess | None = None
    requests: Requests | None = None
    latency: list[LatencyRow] | None = None
    response_bytes: list[dict[str, Any]] = []
    apf: Apf = Field(default_factory=Apf)
    process: Process | None = None
    idle: dict[str, Any] | None = None
    timeseries: list[dict[str, Any]] = []
    servers: dict[str, Any] = {}


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
    "apiserver_watch_events_total",  # events sent to watchers: a unit of cost (capacity.py)
    "etcd_request_duration_seconds",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
)
LATENCY_BY = ("verb", "resource", "scope")
# Where the `kubernetes` Service's endpoints are (the label every EndpointSlice controller sets).
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SLICE_SELECTOR = "kubernetes.io/service-name=kubernetes"
ENDPOINTS = "/api/v1/namespaces/default/endpoints/kubernetes"
PODS = "/api/v1/namespaces/kube-system/pods"
LEGACY = "apiserver"  # the server id of streams recorded before servers were told apart

Index = dict[tuple[str, metrics.Labels], float]
T = TypeVar("T")


# --- discovery --------------------------------------------------------------------------


def endpoint_urls(slices: dict[str, Any]) -> list[str]:
    """https://IP:PORT of every endpoint in an EndpointSliceList (pure). Not-ready endpoints
    are kept: a server that is down is a server whose outage is measured."""
    urls = []
    for item in slices.get("items") or []:
        if item.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = [p["port"] for p in item.get("ports") or [] if p.get("port")]
        named = [p["port"] for p in item.get("ports") or [] if p.get("name") == "https"]
        for ep in item.get("endpoints") or []:
            for addr in ep.get("addresses") or []:
                host = f"[{addr}]" if ":" in addr else addr
                urls += [f"https://{host}:{port}" for port in (named or ports)[:1]]
    return sorted(set(urls))


def endpoints_urls(ep: dict[str, Any]) -> list[str]:
    """The same from a (core/v1) Endpoints object, as Prometheus's `endpoints` role reads."""
    return endpoint_urls(
        {
            "items": [
                {
                    "addressType": "IPv6" if ":" in a["ip"] else "IPv4",
                    "ports": sub.get("ports"),
                    "endpoints": [{"addresses": [a["ip"]]}],
                }
                for sub in ep.get("subsets") or []
                for a in (sub.get("addresses") or []) + (sub.get("notReadyAddresses") or [])
            ]
        }
    )


def discover(client: httpx.Client) -> tuple[list[str], str]:
    """The servers' URLs, and where they were found: the EndpointSlices, else the Endpoints
    object the API servers write themselves (slices of it may lag, e.g. just after start)."""
    r = client.get(SLICES, params={"labelSelector": SLICE_SELECTOR})
    r.raise_for_status()
    urls = endpoint_urls(r.json())
    if urls:
        return urls, "endpointslices"
    r = client.get(ENDPOINTS)
    if r.status_code == 404:
        return [], "endpoints"
    r.raise_for_status()
    return endpoints_urls(r.json()), "endpoints"


def _fallback_note(listed: list[str], why: str, server: str) -> str:
    if not listed:
        return f"{why}: scraping the cluster's URL {server} (one view, however many servers)"
    head = (
        f"the endpoints list {len(listed)} API server(s) ({', '.join(listed)}), none "
        f"reachable from here: scraping the cluster's URL {server}"
    )
    # one server listed (the local provider advertises an address it does not serve on):
    # the URL reaches that server; with more, a load balancer mixes them
    return head + ("" if len(listed) == 1 else "; behind a load balancer it mixes them")


def pod_row(pod: dict[str, Any]) -> dict[str, Any]:
    st = [
        c
        for c in pod.get("status", {}).get("containerStatuses") or []
        if c.get("name") == "kube-apiserver"
    ]
    last = (st[0].get("lastState") or {}).get("terminated") or {} if st else {}
    return {
        "pod": pod.get("metadata", {}).get("name"),
        "ip": pod.get("status", {}).get("podIP"),
        "restarts": sum(c.get("restartCount", 0) for c in st),
        "last_termination": last.get("reason"),
    }


# --- the measurement --------------------------------------------------------------------


class _Server:
    def __init__(self, sid: str, client: httpx.Client) -> None:
        self.id = sid
        self.client = client
        self.last: dict[tuple[str, metrics.Labels], float] = {}
        self.busy_since: float | None = None  # monotonic start of a scrape in flight
        self.missed = 0  # rounds that came while it was in flight
        self.cpu: dict[int, tuple[float, float]] = {}  # round -> (t, process CPU seconds)


class ApiserverMetrics:
    name = "apiserver"

    def __init__(
        self,
        cluster: Cluster,
        raw: Path,
        interval: float = 5.0,
        rediscover_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cluster = cluster
        self._transport = {"transport": transport} if transport else {}
        self.raw = raw
        self.interval = interval
        self.writer = JsonlWriter(raw)
        self._timeout = max(interval * 2, 10)
        self._client = self._http()  # the cluster's URL
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="apiserver-scrape")
        self._ticker = Ticker(interval, self.scrape_round, "apiserver-metrics")
        self._round = 0
        self._rediscover_every = max(1, round(rediscover_s / interval))
        self._fallback = False

    def start(self) -> None:
        self.discover_servers()
        self._pods()
        self.scrape_round(wait_all=True)  # a baseline before any load
        self._ticker.start()

    def gather(self) -> dict[str, Any]:
        self._ticker.stop()
        self.scrape_round(wait_all=True)
        self._pods()
        self._pool.shutdown(wait=True)
        for s in self._servers.values():
            s.client.close()
        self._client.close()
        self.writer.close()
        return summarize(read_jsonl(self.raw))

    # --- discovery ----------------------------------------------------------------------

    def _http(self, url: str | None = None, timeout: float | None = None) -> httpx.Client:
        extra = {"base_url": url} if url else {}
        return http_client(
            self.cluster, timeout=timeout or self._timeout, **extra, **self._transport
        )

    def _reachable(self, url: str) -> bool:
        """Any HTTP answer counts (even 500): only a server the harness cannot talk to at
        all (no route, TLS refused) is not reachable."""
        try:
            with self._http(url, timeout=5) as c:
                c.get("/livez")
            return True
        except httpx.HTTPError:
            return False

    def discover_servers(self) -> None:
        """The servers to scrape, before the first round."""
        self._discover(first=True)

    def _discover(self, first: bool = False) -> None:
        source = "endpointslices"
        try:
            urls, source = discover(self._client)
        except Exception as e:  # noqa: BLE001 - recorded; the known servers stay measured
            urls, why = [], f"{type(e).__name__}: {e}"[:300]
            if not first:
                self.writer.write({"t": time.time(), "discovery_error": why})
                return
        else:
            why = "no address in the kubernetes Service's EndpointSlices or Endpoints"
        if first:
            listed, urls = urls, [u for u in urls if self._reachable(u)]
            if not urls:
                self._fallback = True
                urls = [self.cluster.server]
                why = _fallback_note(listed, why, self.cluster.server)
            self.writer.write(
                {
                    "t": time.time(),
                    "discovery": {
                        "source": "cluster-url" if self._fallback else source,
                        "servers": urls,
                        **({"note": why} if self._fallback else {}),
                    },
                }
            )
        elif self._fallback:
            return  # the endpoints were unreachable at the start: no mixing of the two views
        with self._lock:
            new = [u for u in urls if u not in self._servers]
            for u in new:
                self._servers[u] = _Server(u, self._http(u))
        if new and not first:
            self.writer.write(
                {"t": time.time(), "discovery": {"source": source, "servers": urls, "added": new}}
            )

    def _pods(self) -> None:
        """The kubelet's view of kubeadm's kube-apiserver static pods (kind): restarts and
        the last termination's reason (OOMKilled), matched to servers by pod IP."""
        try:
            r = self._client.get(PODS, params={"labelSelector": "component=kube-apiserver"})
            r.raise_for_status()
            rows = [pod_row(p) for p in r.json().get("items", [])]
        except (httpx.HTTPError, ValueError) as e:  # the API may be down: not fatal here
            self.writer.write({"t": time.time(), "pods_error": f"{type(e).__name__}: {e}"[:300]})
            return
        self.writer.write({"t": time.time(), "pods": rows})

    # --- scraping -----------------------------------------------------------------------

    def scrape_round(self, wait_all: bool = False) -> None:
        """Scrape every server once, in parallel. A server whose last scrape is still in
        flight is not asked again (no pile-up on a stalled server): the rounds it misses
        share that scrape's outcome, so a hang that ends in a failure counts for every
        round it lasted, and a slow answer makes them late, not failed."""
        k = self._round
        self._round += 1
        if k and k % self._rediscover_every == 0:
            self._pool.submit(self._discover)
        futures: list[Future[None]] = []
        with self._lock:
            for s in self._servers.values():
                if s.busy_since is None:
                    s.busy_since = time.monotonic()
                    futures.append(self._pool.submit(self._scrape, s, k))
                else:
                    s.missed += 1
        if wait_all:
            wait(futures, timeout=self._timeout + 5)

    def _scrape(self, s: _Server, k: int) -> None:
        t0 = time.monotonic()
        base: dict[str, Any] = {"round": k, "server": s.id}
        try:
            try:
                r = s.client.get("/metrics")
                r.raise_for_status()
            except httpx.HTTPError as e:  # the server did not answer, or answered an error
                base["missed"] = s.missed
                self.writer.write(
                    {
                        "t": time.time(),
                        **base,
                        "scrape_ms": (time.monotonic() - t0) * 1000,
                        "error": f"{type(e).__name__}: {e}"[:300],
                    }
                )
                return
            # the API server's answer time only: parsing below is the harness's own CPU
            scrape_ms = (time.monotonic() - t0) * 1000
            base["missed"] = s.missed
            try:
                samples = metrics.parse(r.text, FAMILIES)
            except Exception as e:  # noqa: BLE001 - the harness's failure, not the server's
                self.writer.write(
                    {
                        "t": time.time(),
                        **base,
                        "scrape_ms": scrape_ms,
                        "harness_error": f"parsing /metrics: {type(e).__name__}: {e}"[:300],
                    }
                )
                return
            # Only series that changed since this server's last scrape: most do not, and a
            # full scrape of the latency histograms is megabytes. `expand` restores them.
            changed = [
                [n, [list(p) for p in lb], v] for n, lb, v in samples if s.last.get((n, lb)) != v
            ]
            s.last = {(n, lb): v for n, lb, v in samples}
            now = time.time()
            cpu = metrics.gauge(s.last, "process_cpu_seconds_total").get(())
            if cpu is not None:
                with self._lock:
                    s.cpu[k] = (now, cpu)
            self.writer.write({"t": now, **base, "scrape_ms": scrape_ms, "changed": changed})
        finally:
            with self._lock:
                s.busy_since, s.missed = None, 0

    # --- the idle baseline --------------------------------------------------------------

    def wait_idle(
        self, window_s: float = 15.0, max_s: float = 90.0, log: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Wait, at most `max_s`, until the API servers' CPU rate is steady over `window_s`
        (after seeding the controllers and the watch cache still work for a while), and
        mark that window in the raw stream as the idle baseline. Call it with the probes
        running and before any agent: above-idle cost is then the agents' alone."""
        n = max(2, round(window_s / self.interval))
        t0 = time.monotonic()
        found: IdleWindow | None = None
        while True:
            found = idle_window(self._merged_rates(), n)
            waited = time.monotonic() - t0
            if (found and found.settled) or waited >= max_s:
                break
            time.sleep(self.interval / 2)  # bounded by max_s; the scrapes do the work
        if found is None:
            rec: dict[str, Any] = {
                "settled": False,
                "waited_s": round(waited, 1),
                "error": f"no two successive scrapes of every server in {waited:.0f}s",
            }
            said = rec["error"]
        else:
            rec = {
                "rounds": [found.first, found.last],
                "settled": found.settled,
                "waited_s": round(waited, 1),
                "rates": [round(x, 4) for x in found.rates],
            }
            said = (
                f"API server CPU {sum(found.rates) / len(found.rates):.3f} cores over "
                f"rounds {found.first}-{found.last}"
                + (
                    ""
                    if found.settled
                    else f" (not steady after {max_s:.0f}s: the cost above it is uncertain)"
                )
            )
        self.writer.write({"t": time.time(), "idle": rec})
        if log:
            log(f"idle baseline: {said}")
        return rec

    def _merged_rates(self) -> list[tuple[int, int, float]]:
        """(from round, to round, cores summed over servers) between successive rounds every
        server that answers answered (a slow scrape skips rounds: its interval is longer)."""
        with self._lock:
            # a server that never answered adds nothing (its outage is counted elsewhere)
            cpu = [dict(s.cpu) for s in self._servers.values() if s.cpu]
        if not cpu:
            return []
        rounds = sorted(set.intersection(*(set(c) for c in cpu)))
        out = []
        for a, b in zip(rounds, rounds[1:], strict=False):
            cores = 0.0
            for c in cpu:
                (ta, ca), (tb, cb) = c[a], c[b]
                cores += (cb - ca) / (tb - ta) if tb > ta and cb >= ca else 0.0
            out.append((a, b, cores))
        return out


@dataclass(frozen=True)
class IdleWindow:
    first: int  # the round the window starts at
    last: int
    rates: list[float]  # cores in each interval of the window
    settled: bool


def steady(rates: list[float], abs_tol: float = 0.05, rel_tol: float = 0.25) -> bool:
    """Rates that differ by at most abs_tol cores, or rel_tol of their mean (pure)."""
    mean = sum(rates) / len(rates)
    return max(rates) - min(rates) <= max(abs_tol, rel_tol * mean)


def idle_window(rates: list[tuple[int, int, float]], n: int) -> IdleWindow | None:
    """The last n successive intervals (from round, to round, cores), and whether they are
    steady (pure)."""
    tail = rates[-n:]
    if not tail:
        return None
    vals = [r for _, _, r in tail]
    return IdleWindow(tail[0][0], tail[-1][1], vals, len(tail) == n and steady(vals))


# --- summary (pure) ---------------------------------------------------------------------


def expand(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn one server's stream of changed series back into full scrapes ("samples")."""
    state: dict[tuple[str, metrics.Labels], float] = {}
    out = []
    for r in records:
        rows = r.get("changed")
        if rows is None and isinstance(r.get("samples"), list):  # a full scrape (older runs)
            state, rows = {}, r["samples"]
        if rows is None:
            out.append(r)
            continue
        for n, lb, v in rows:
            state[(n, tuple((k, val) for k, val in lb))] = v
        out.append({**{k: v for k, v in r.items() if k != "changed"}, "samples": dict(state)})
    return out


@dataclass
class Round:
    """All servers at one scrape round: `state` holds every server's latest full scrape (its
    first one before it answered: it adds nothing until then), `fresh` the servers that
    answered in this round."""

    k: int
    t: float
    state: dict[str, Index]
    fresh: dict[str, Index]


def rounds(records: list[dict[str, Any]]) -> list[Round]:
    """The successful scrapes of all servers, aligned by round (pure)."""
    per_server: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(records):
        if "changed" in r or "samples" in r:
            per_server.setdefault(r.get("server", LEGACY), []).append(
                r if "round" in r else {**r, "round": i}
            )
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    first: dict[str, Index] = {}
    for sid, recs in per_server.items():
        full = expand(recs)
        first[sid] = full[0]["samples"]
        for r in full:
            by_round.setdefault(r["round"], {})[sid] = r
    out: list[Round] = []
    state = dict(first)
    for k in sorted(by_round):
        fresh = {sid: r["samples"] for sid, r in by_round[k].items()}
        state = {**state, **fresh}
        out.append(Round(k, max(r["t"] for r in by_round[k].values()), state, fresh))
    return out


def _counter(a: Round, b: Round, name: str, by: tuple[str, ...] = ()) -> dict[tuple, float]:
    """A counter's increase between two rounds, per server (resets handled), summed."""
    return metrics.merge_counts(
        [metrics.counter_delta(a.state.get(s, idx), idx, name, by) for s, idx in b.state.items()]
    )


def _hist(
    a: Round, b: Round, name: str, by: tuple[str, ...]
) -> dict[tuple, list[tuple[float, float]]]:
    return metrics.merge_histograms(
        [metrics.histogram_delta(a.state.get(s, idx), idx, name, by) for s, idx in b.state.items()]
    )


def _gauge(r: Round, name: str, by: tuple[str, ...] = ()) -> dict[tuple, float]:
    """Summed over the servers that answered in this round (a dead one's last value is not
    a value now)."""
    return metrics.merge_counts([metrics.gauge(idx, name, by) for idx in r.fresh.values()])


def _guarded(errors: list[str], what: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a harness bug is counted and shown, never an outage
        errors.append(f"summarizing {what}: {type(e).__name__}: {e}"[:300])
        return None


def summarize(records: list[dict[str, Any]], window_s: float = 300.0) -> dict[str, Any]:
    """Everything the SLOs and the report need, from the raw scrape stream (pure)."""
    harness = [
        f"{r.get('server', LEGACY)}: {r['harness_error']}" for r in records if "harness_error" in r
    ]
    scrapes = [r for r in records if "scrape_ms" in r]
    access = _access(scrapes)
    ok = rounds(records)
    answered = {r.get("server", LEGACY) for r in scrapes if "error" not in r}
    head: dict[str, Any] = {
        "servers_measured": len(answered),
        "servers_scraped": len(access["by_server"]),
        "discovery": _discovery(records),
        "harness_access": access,
    }
    if len(ok) < 2:
        return {
            **head,
            "error": f"fewer than two successful scrape rounds ({len(ok)} of "
            f"{len({r.get('round', i) for i, r in enumerate(scrapes)})})",
            "harness_errors": {"count": len(harness), "errors": harness[:5]},
        }
    first, last = ok[0], ok[-1]
    sections: dict[str, Callable[[], Any]] = {
        "requests": lambda: _requests(first, last),
        "latency": lambda: _latency(ok, window_s),
        "response_bytes": lambda: _response_bytes(first, last),
        "apf": lambda: _apf(ok, first, last),
        "etcd": lambda: _quantiles(
            first, last, "etcd_request_duration_seconds", ("operation", "type")
        ),
        "watches_max": lambda: max(
            _gauge(r, "apiserver_longrunning_requests", ("verb",)).get(("WATCH",), 0.0) for r in ok
        ),
        "inflight_max": lambda: max(
            sum(_gauge(r, "apiserver_current_inflight_requests").values()) for r in ok
        ),
        "process": lambda: _process(ok, first, last),
        "servers": lambda: _servers(ok, access["by_server"], records),
        "idle": lambda: _idle(records, ok),
        "timeseries": lambda: _timeseries(ok),
    }
    out: dict[str, Any] = {
        **head,
        "duration_s": last.t - first.t,
        "scrapes": len(ok),
        "origin_t": first.t,
    }
    for name, fn in sections.items():
        value = _guarded(harness, name, fn)
        if value is not None:
            out[name] = value
    out["harness_errors"] = {"count": len(harness), "errors": harness[:5]}
    return out


def _discovery(records: list[dict[str, Any]]) -> dict[str, Any]:
    found = [r["discovery"] for r in records if "discovery" in r]
    failed = [r["discovery_error"] for r in records if "discovery_error" in r]
    if not found:
        return {"source": "unknown (a stream recorded before discovery)"}
    return {
        **found[0],
        "servers": sorted({u for d in found for u in d["servers"]}),
        "changes": sum(1 for d in found if d.get("added")),
        "failed": len(failed),
        "errors": failed[:3],
    }


def _access(scrapes: list[dict[str, Any]]) -> dict[str, Any]:
    """How the harness reached the servers. `failed` counts the servers' failures only: a
    scrape the server answered but the harness could not read is a harness error."""
    lat = sorted(r["scrape_ms"] for r in scrapes)
    failed = [r for r in scrapes if "error" in r]
    by_server: dict[str, dict[str, Any]] = {}
    for r in sorted(scrapes, key=lambda r: r["t"]):
        s = by_server.setdefault(
            r.get("server", LEGACY),
            {"scrapes": 0, "failed": 0, "late": 0, "outages": [], "errors": []},
        )
        # rounds missed while this scrape was in flight share its outcome
        missed = r.get("missed", 0)
        s["scrapes"] += 1 + missed
        if "error" not in r:
            s["late"] += missed
            s["_down"] = False
            continue
        s["failed"] += 1 + missed
        if s["errors"][-1:] != [r["error"]] and len(s["errors"]) < 3:
            s["errors"].append(r["error"])
        # consecutive failures of one server are one outage: [sent, last failure]
        if s.get("_down"):
            s["outages"][-1][1] = r["t"]
        else:
            s["outages"].append([r["t"] - r["scrape_ms"] / 1000, r["t"]])
        s["_down"] = True
    for s in by_server.values():
        s.pop("_down", None)
    return {
        "scrapes": sum(s["scrapes"] for s in by_server.values()),
        "failed": sum(s["failed"] for s in by_server.values()),
        "scrape_ms_p50": percentile(lat, 0.5),
        "scrape_ms_max": lat[-1] if lat else None,
        # the break-glass path is what an operator would use to roll back
        "degraded": bool(failed) or (bool(lat) and lat[-1] > 5000),
        "errors": [f"{r.get('server', LEGACY)}: {r['error']}" for r in failed[:5]],
        "by_server": by_server,
    }


def _requests(first: Round, last: Round) -> dict[str, Any]:
    codes = _counter(first, last, "apiserver_request_total", ("code",))
    by_verb = _counter(first, last, "apiserver_request_total", ("verb", "resource", "code"))
    return {
        "total": sum(codes.values()),
        "by_code": {k[0]: v for k, v in codes.items()},
        "throttled_429": codes.get(("429",), 0.0),
        "errors_5xx": sum(v for (c,), v in codes.items() if c.startswith("5")),
        "by_verb_resource": [
            {"verb": v, "resource": r, "code": c, "count": n}
            for (v, r, c), n in sorted(by_verb.items())
            if n
        ],
    }


def _latency(ok: list[Round], window_s: float) -> list[dict[str, Any]]:
    """p50/p99 by verb, resource, scope over the run, and the worst p99 of any window."""
    first, last = ok[0], ok[-1]
    out = []
    for metric in ("apiserver_request_sli_duration_seconds", "apiserver_request_duration_seconds"):
        whole = _hist(first, last, metric, LATENCY_BY)
        worst: dict[tuple[str, ...], float] = {}
        for a, b in _windows(ok, window_s):
            for g, buckets in _hist(a, b, metric, LATENCY_BY).items():
                q = metrics.quantile(0.99, buckets)
                if q is not None:
                    worst[g] = max(worst.get(g, 0.0), q)
        for (verb, resource, scope), buckets in sorted(whole.items()):
            n = metrics.count(buckets)
            if n <= 0:
                continue
            out.append(
                {
                    "metric": metric,
                    "verb": verb,
                    "resource": resource,
                    "scope": scope,
                    "count": n,
                    "p50": metrics.quantile(0.5, buckets),
                    "p99": metrics.quantile(0.99, buckets),
                    "p99_worst_window": worst.get((verb, resource, scope)),
                }
            )
    return out


def _windows(ok: list[Round], window_s: float) -> list[tuple[Round, Round]]:
    """Consecutive windows of about window_s (the whole run when it is shorter)."""
    out, start = [], ok[0]
    for rec in ok[1:]:
        if rec.t - start.t >= window_s:
            out.append((start, rec))
            start = rec
    if start is not ok[-1] or not out:
        out.append((start, ok[-1]))
    return out


def _quantiles(first: Round, last: Round, metric: str, by: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for g, buckets in sorted(_hist(first, last, metric, by).items()):
        if metrics.count(buckets) > 0:
            out.append(
                {
                    **dict(zip(by, g, strict=True)),
                    "count": metrics.count(buckets),
                    "p50": metrics.quantile(0.5, buckets),
                    "p99": metrics.quantile(0.99, buckets),
                }
            )
    return out


def _apf(ok: list[Round], first: Round, last: Round) -> dict[str, Any]:
    rejected = _counter(
        first,
        last,
        "apiserver_flowcontrol_rejected_requests_total",
        ("priority_level", "flow_schema", "reason"),
    )
    inqueue_max: dict[str, float] = {}
    seats_max: dict[str, float] = {}
    for rec in ok:
        for (pl,), v in _gauge(
            rec, "apiserver_flowcontrol_current_inqueue_requests", ("priority_level",)
        ).items():
            inqueue_max[pl] = max(inqueue_max.get(pl, 0.0), v)
        for (pl,), v in _gauge(
            rec, "apiserver_flowcontrol_current_executing_seats", ("priority_level",)
        ).items():
            seats_max[pl] = max(seats_max.get(pl, 0.0), v)
    dispatched = _counter(
        first,
        last,
        "apiserver_flowcontrol_dispatched_requests_total",
        ("priority_level", "flow_schema"),
    )
    # each server has its own seats: the control plane's concurrency is their sum
    nominal = metrics.merge_counts(
        [
            metrics.gauge(idx, "apiserver_flowcontrol_nominal_limit_seats", ("priority_level",))
            for idx in last.state.values()
        ]
    )
    return {
        # the servers' concurrency, split by level (what a mitigation's share is taken of)
        "nominal_limit_seats": {pl: v for (pl,), v in sorted(nominal.items())},
        # who the API server served: which identity's flow schema took the seats
        "dispatched": [
            {"priority_level": p, "flow_schema": f, "count": n}
            for (p, f), n in sorted(dispatched.items(), key=lambda kv: -kv[1])
            if n
        ],
        "rejected": [
            {"priority_level": p, "flow_schema": f, "reason": r, "count": n}
            for (p, f, r), n in sorted(rejected.items())
            if n
        ],
        "rejected_total": sum(rejected.values()),
        "inqueue_max": {k: v for k, v in inqueue_max.items() if v},
        "executing_seats_max": {k: v for k, v in seats_max.items() if v},
        "wait": _quantiles(
            first,
            last,
            "apiserver_flowcontrol_request_wait_duration_seconds",
            ("priority_level", "execute"),
        ),
    }


def _response_bytes(first: Round, last: Round) -> list[dict[str, Any]]:
    """What the API servers sent, by verb, resource and scope, largest first."""
    by = ("verb", "resource", "scope")
    total = _counter(first, last, "apiserver_response_sizes_sum", by)
    count = _counter(first, last, "apiserver_response_sizes_count", by)
    return [
        {
            "verb": v,
            "resource": r,
            "scope": sc,
            "bytes": b,
            "responses": count.get(k, 0),
            "mean_bytes": b / count[k] if count.get(k) else None,
        }
        for k, b in sorted(total.items(), key=lambda kv: -kv[1])
        if b
        for v, r, sc in [k]
    ]


def _one(idx: Index, name: str) -> float | None:
    return metrics.gauge(idx, name).get(())


def _process(ok: list[Round], first: Round, last: Round) -> dict[str, Any]:
    """All servers together; `rss_max_mib` is the largest one server reached (what an OOM
    kill is about), per server in `servers`."""
    cpu = sum(_counter(first, last, "process_cpu_seconds_total").values())
    rss = max(
        (_one(idx, "process_resident_memory_bytes") or 0.0 for r in ok for idx in r.fresh.values()),
        default=0.0,
    )
    dur = last.t - first.t
    return {
        "cpu_seconds": cpu,
        "cpu_cores_avg": cpu / dur if dur > 0 else None,
        "rss_max_mib": rss / 2**20,
    }


def _servers(
    ok: list[Round], access: dict[str, dict[str, Any]], records: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per server: what it served, its CPU and memory, restarts, and its scrapes' outcome."""
    pods = [{p["ip"]: p for p in r["pods"] if p.get("ip")} for r in records if "pods" in r]
    out: dict[str, dict[str, Any]] = {}
    for sid in sorted(set(access) | set(ok[-1].state)):
        seen = [r for r in ok if sid in r.fresh]
        row: dict[str, Any] = {
            "scrapes": access.get(sid, {}).get("scrapes", 0),
            "failed": access.get(sid, {}).get("failed", 0),
            "outages": access.get(sid, {}).get("outages", []),
        }
        if len(seen) >= 2:
            a, b = seen[0].fresh[sid], seen[-1].fresh[sid]
            dur = seen[-1].t - seen[0].t
            cpu = metrics.counter_delta(a, b, "process_cpu_seconds_total").get((), 0.0)
            starts = {_one(r.fresh[sid], "process_start_time_seconds") for r in seen} - {None}
            row.update(
                {
                    "requests": sum(
                        metrics.counter_delta(a, b, "apiserver_request_total").values()
                    ),
                    "cpu_seconds": cpu,
                    "cpu_cores_avg": cpu / dur if dur > 0 else None,
                    "rss_max_mib": max(
                        _one(r.fresh[sid], "process_resident_memory_bytes") or 0.0 for r in seen
                    )
                    / 2**20,
                    # a new start time is a new process: killed (OOM?) or restarted
                    "restarts": max(0, len(starts) - 1),
                }
            )
        ip = urlsplit(sid).hostname if "://" in sid else None
        if len(pods) >= 2 and ip in pods[0] and ip in pods[-1]:
            a_pod, b_pod = pods[0][ip], pods[-1][ip]
            n = b_pod["restarts"] - a_pod["restarts"]
            # the kubelet keeps the last termination only: OOM kills are exact for one
            # restart in the run; after more, only the last one's reason is known
            row["pod"] = {
                "name": b_pod["pod"],
                "restarts": n,
                "last_termination": b_pod["last_termination"] if n else None,
            }
            oom = int(n > 0 and b_pod["last_termination"] == "OOMKilled")
            row["oom_kills"] = oom if n <= 1 else None
            row["oom_kills_at_least"] = oom
        out[sid] = row
    return out


def _idle(records: list[dict[str, Any]], ok: list[Round]) -> dict[str, Any]:
    """The API servers' CPU in the idle window the run marked (see `wait_idle`)."""
    marks = [r["idle"] for r in records if "idle" in r]
    if not marks:
        return {"error": "the run marked no idle window"}
    mark = marks[-1]
    if "rounds" not in mark:
        return {**mark, "error": mark.get("error", "no idle window")}
    by_k = {r.k: r for r in ok}
    a, b = by_k.get(mark["rounds"][0]), by_k.get(mark["rounds"][1])
    if a is None or b is None or b.t <= a.t:
        return {**mark, "error": "the idle window's scrapes are not in the stream"}
    dt = b.t - a.t
    per = {
        s: metrics.counter_delta(a.state.get(s, idx), idx, "process_cpu_seconds_total").get((), 0.0)
        / dt
        for s, idx in b.state.items()
    }
    return {
        **mark,
        "from_t": a.t,
        "to_t": b.t,
        "cpu_cores": sum(per.values()),
        "cpu_cores_by_server": per,
    }


def _timeseries(ok: list[Round]) -> list[dict[str, Any]]:
    """Per scrape interval: rates and the interval's LIST p99, for plots."""
    out = []
    t0 = ok[0].t
    for a, b in zip(ok, ok[1:], strict=False):
        dt = b.t - a.t
        if dt <= 0:
            continue
        codes = _counter(a, b, "apiserver_request_total", ("code",))
        lists = _hist(a, b, "apiserver_request_duration_seconds", ("verb",))
        cpu = {
            s: metrics.counter_delta(a.state.get(s, idx), idx, "process_cpu_seconds_total").get(
                (), 0.0
            )
            / dt
            for s, idx in b.state.items()
        }
        rejected = sum(_counter(a, b, "apiserver_flowcontrol_rejected_requests_total").values())
        out.append(
            {
                "t": round(b.t - t0, 2),
                "rps": sum(codes.values()) / dt,
                "throttled_rps": codes.get(("429",), 0.0) / dt,
                "errors_5xx_rps": sum(v for (c,), v in codes.items() if c.startswith("5")) / dt,
                "apf_rejected_rps": rejected / dt,
                "cpu_cores": sum(cpu.values()),
                "cpu_cores_by_server": cpu,
                "list_p99_s": metrics.quantile(0.99, lists.get(("LIST",), [])),
                "inflight": sum(_gauge(b, "apiserver_current_inflight_requests").values()),
                "servers_answered": len(b.fresh),
            }
        )
    return out
