"""The capacity model: unit costs measured on small runs, the capacity the API server has,
and the node count where the first SLO breaks (pure).

Why not a polynomial in N: past the knee latency is queueing, not work. The model is
  demand(N)  = idle + sum_k u_k * F_k(N)    CPU-seconds per second (cores)
  rho(N)     = demand(N) / cores(N)         utilisation of what the API server really gets:
               its cores, or on a shared host min(quota, host - others(N)), others(N)
               the host's busy cores besides it (etcd, KWOK, the harness), a + b*N
  p99(N)     = s(N) / (1 - rho(N))          queueing: latency diverges as rho -> 1
  429s       = 1 - 1/rho once rho > 1       APF sheds what the server cannot serve
  seats(N)   = seats per agent, scaled by the same 1/(1 - rho)   against the level's seats
  memory(N)  = resident(N) + 5 x bytes of every LIST in flight   (KEP-3157's factor)
where F_k are work rates at the API server (LIST bytes returned, watch events sent, watches
open, requests), each per agent a + b*N (an agent listing cluster-wide pays for every
object); u_k are CPU-seconds per unit, fitted on the scrape intervals of the small runs
(many samples per run, the idle ones anchor the intercept); the cluster's own work
(Lease renewals, KWOK) a + b*N beside the agents'. s(N) is the p99 a class of request would
have on an idle server, p99 * (1 - rho) measured at each small size, as a line in the watch
events the server sends, E(N): fan-out delays writes at low CPU. A law of latency or of the
rest of the machine that falls with N is small-size noise (one-sided): held at its lowest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.gate.compare import load_window, run_costs
from loadtest.gate.fit import Line, fit_nonnegative
from loadtest.measurements import machine as machine_m
from loadtest.measurements import metrics
from loadtest.measurements.apiserver import ApiServerSummary, expand
from loadtest.results import read_jsonl
from loadtest.run.record import RecordLike, coerce, load_record

# Work the API server does, per second, by what it costs (see module doc).
FEATURES = ("list_bytes", "watch_events", "watches", "requests")
UNITS = {
    "list_bytes": "CPU-s per byte listed",
    "watch_events": "CPU-s per watch event",
    "watches": "cores per open watch",
    "requests": "CPU-s per request",
}
# KEP-3157: a LIST holds about 5x its response size in temporary API server memory.
LIST_MEMORY_FACTOR = 5.0
SATURATED = 0.85  # intervals above this share of the cores are censored: left out of the fit


# --- one run, reduced ----------------------------------------------------------------------


@dataclass
class RunSample:
    """What the model takes from one measured run (a fixture-friendly, JSON-able record)."""

    nodes: int
    agents: int
    pods_per_node: int
    pod_bytes: int
    node_bytes: int
    load_s: float
    cpu_busy: float | None  # API server cores during the load window
    # work rates during the load window, whole server (feature -> per second)
    work: dict[str, float]
    # the same outside the load window (harness, KWOK, controllers): the background
    background: dict[str, float]
    # per scrape interval: (cores, {feature: rate}) for the unit-cost regression
    intervals: list[tuple[float, dict[str, float]]]
    p99: dict[str, float]  # SLO class -> p99 seconds measured (None classes left out)
    list_bytes_by_resource: dict[str, float]  # bytes per second in the window, by resource
    rss_bytes: float | None
    seats_per_agent: float | None
    level_seats: float | None  # nominal seats of the level the agents land in
    verdict: str = "?"
    failed_slos: list[str] = field(default_factory=list)
    run_dir: str = ""
    # the machine's busy cores besides the API server in the load window (etcd, KWOK, the
    # harness, its agents): None when not measured (runs before the machine measurement)
    others_cores: float | None = None


def _interval_features(a: dict, b: dict, dt: float) -> dict[str, float]:
    sizes = metrics.counter_delta(a, b, "apiserver_response_sizes_sum", ("verb",))
    events = metrics.counter_delta(a, b, "apiserver_watch_events_total")
    reqs = metrics.counter_delta(a, b, "apiserver_request_total")
    watches = [
        metrics.gauge(x, "apiserver_longrunning_requests", ("verb",)).get(("WATCH",), 0.0)
        for x in (a, b)
    ]
    return {
        "list_bytes": sizes.get(("LIST",), 0.0) / dt,
        "watch_events": sum(events.values()) / dt,
        "watches": sum(watches) / 2,
        "requests": sum(reqs.values()) / dt,
    }


def _cpu(a: dict, b: dict, dt: float) -> float:
    return metrics.counter_delta(a, b, "process_cpu_seconds_total").get((), 0.0) / dt


def scrape_intervals(raw: Path, group: int | None = None) -> list[tuple[float, float, float, dict]]:
    """(t0, t1, cores, features) over windows of `group` scrapes (a LIST that spans a scrape
    is counted when it ends; wider windows blur that; short runs get single intervals)."""
    ok = [r for r in expand(read_jsonl(raw)) if "samples" in r]
    group = group or (3 if len(ok) >= 24 else 1)
    out = []
    for i in range(0, len(ok) - group, group):
        a, b = ok[i], ok[i + group]
        dt = b["t"] - a["t"]
        if dt > 0:
            out.append(
                (
                    a["t"],
                    b["t"],
                    _cpu(a["samples"], b["samples"], dt),
                    _interval_features(a["samples"], b["samples"], dt),
                )
            )
    return out


def _mean_features(rows: Sequence[tuple[float, float, float, dict]]) -> dict[str, float]:
    total = sum(t1 - t0 for t0, t1, _, _ in rows)
    if total <= 0:
        return dict.fromkeys(FEATURES, 0.0)
    return {k: sum(f[k] * (t1 - t0) for t0, t1, _, f in rows) / total for k in FEATURES}


def _p99_classes(summary: RecordLike) -> dict[str, float]:
    """Worst p99 of each SLO class that CPU saturation moves (API server's SLI histogram,
    as the SLOs read it; break-glass as the harness's client saw it)."""
    from loadtest.verdict.slo import MUTATING_VERBS

    out: dict[str, float] = {}
    m = coerce(summary).measurements
    for r in (m.apiserver.latency if m.apiserver else None) or []:
        if r.metric != "apiserver_request_sli_duration_seconds" or r.p99 is None:
            continue
        if r.verb in MUTATING_VERBS:
            cls = "mutating"
        elif r.verb == "LIST" and r.scope == "cluster":
            cls = "read-cluster"
        elif r.verb in ("GET", "LIST"):
            cls = "read-resource" if r.scope == "resource" else "read-namespace"
        else:
            continue
        out[cls] = max(out.get(cls, 0.0), r.p99)
    if m.break_glass and m.break_glass.p99_ms is not None:
        out["break-glass"] = m.break_glass.p99_ms / 1000
    return out


def sample_from_run(run_dir: Path) -> RunSample:
    """Reduce a results folder (summary, raw/apiserver.jsonl, Locust history) to a sample."""
    s = load_record(run_dir)
    inv = s.config.inventory if s.config else None
    v, _ = run_costs(run_dir)
    window = load_window(run_dir)
    raw = run_dir / "raw" / "apiserver.jsonl"
    rows = scrape_intervals(raw) if raw.exists() else []
    inside = [r for r in rows if window and r[0] >= window[0] - 1 and r[1] <= window[1] + 6]
    outside = [r for r in rows if not window or r[1] <= window[0] or r[0] >= window[1]]
    api = s.measurements.apiserver or ApiServerSummary()
    load_s = (window[1] - window[0]) if window else (s.config.duration_s if s.config else 0.0)
    by_res: dict[str, float] = {}
    for r in api.response_bytes:
        if r["verb"] == "LIST" and load_s:
            by_res[r["resource"]] = by_res.get(r["resource"], 0.0) + r["bytes"] / load_s
    nominal = api.apf.nominal_limit_seats
    mraw = run_dir / "raw" / "machine.jsonl"
    busy = machine_m.busy_cores(read_jsonl(mraw), *window) if window and mraw.exists() else None
    others = (
        max(0.0, busy - v["apiserver_cpu"])
        if busy is not None and v["apiserver_cpu"] is not None
        else None
    )
    peak = s.cluster.get("apiserver_memory_peak_bytes")
    rss = api.process.rss_max_mib if api.process else None
    return RunSample(
        nodes=inv.nodes if inv else 0,
        agents=s.agents,
        pods_per_node=inv.pods_per_node if inv else 0,
        pod_bytes=inv.pod_bytes if inv else 0,
        node_bytes=inv.node_bytes if inv else 0,
        load_s=load_s,
        cpu_busy=v["apiserver_cpu"],
        work=_mean_features(inside),
        background=_mean_features(outside),
        intervals=[(c, f) for _, _, c, f in rows],
        p99=_p99_classes(s),
        list_bytes_by_resource=by_res,
        rss_bytes=float(peak) if peak else (rss * 2**20 if rss else None),
        seats_per_agent=v["apf_seats_per_agent"],
        level_seats=nominal.get("workload-low"),
        verdict=s.verdict or "?",
        failed_slos=[r.name for r in s.slo if r.status != "pass"],
        run_dir=str(run_dir),
        others_cores=others,
    )


# --- unit costs ----------------------------------------------------------------------------


def nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0, by trying each subset of columns (a few
    columns only): a negative unit cost is not a cost, it is noise."""
    n = x.shape[1]
    best, best_res = np.zeros(n), float(np.sum(y**2))
    for mask in range(1, 2**n):
        cols = [i for i in range(n) if mask >> i & 1]
        coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
        if np.any(coef < 0):
            continue
        res = float(np.sum((x[:, cols] @ coef - y) ** 2))
        if res < best_res - 1e-15:
            best, best_res = np.zeros(n), res
            best[cols] = coef
    return best


@dataclass
class UnitCosts:
    idle_cores: float
    per_unit: dict[str, float | None]  # None: the runs did not vary it (not measurable)
    samples: int
    r2: float | None

    def cpu(self, work: dict[str, float]) -> float:
        return self.idle_cores + sum((self.per_unit.get(k) or 0.0) * w for k, w in work.items())


def fit_unit_costs(samples: Sequence[RunSample], cores: float) -> UnitCosts:
    """CPU of each scrape window against the work done in it, over every run given."""
    rows = [(c, f) for s in samples for c, f in s.intervals if c < SATURATED * cores]
    if len(rows) < 3:
        raise ValueError(f"{len(rows)} unsaturated scrape windows: too few to fit unit costs")
    varied = [k for k in FEATURES if len({round(f[k], 6) for _, f in rows}) > 1]
    x = np.array([[1.0] + [f[k] for k in varied] for _, f in rows])
    y = np.array([c for c, _ in rows])
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)  # conditioning: bytes are ~1e6
    coef = nnls(x / scale, y) / scale
    pred = x @ coef
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else None
    per: dict[str, float | None] = {k: None for k in FEATURES}
    per.update({k: float(c) for k, c in zip(varied, coef[1:], strict=True)})
    return UnitCosts(float(coef[0]), per, len(rows), r2)


# --- capacity and the workload at N --------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """What one API server has. cores: what it really gets (here: beside etcd, KWOK and the
    harness; or its CPU quota); seats: its APF level's; memory: its budget (None: none)."""

    cores: float
    replicas: int = 1
    level_seats: float | None = None
    memory_bytes: float | None = None
    # the host's cores when the API server shares it with the rest (this machine): it then
    # gets min(cores, machine_cores - what the rest takes at N); None: a machine of its own
    machine_cores: float | None = None


@dataclass(frozen=True)
class Scaling:
    """How the target differs from the fit's runs: multipliers on the per-agent work."""

    agents_per_node: float = 1.0
    list_bytes: float = 1.0  # bytes per LIST, target / fit (object sizes, pods per node)
    watch_events: float = 1.0  # events per watch, target / fit (objects watched)
    list_cost: float = 1.0  # CPU per byte (e.g. consistent LISTs from etcd, not the cache)


@dataclass
class Law:
    """A work rate per agent, a + b*N (fitted), split by resource where it matters."""

    per_agent: Line
    # the cluster's own work outside the agents (node Lease renewals, KWOK's status updates,
    # controllers): it grows with the inventory too (a Lease PUT per node every 10 s)
    background: Line


@dataclass
class Break:
    slo: str
    nodes: float | None  # None: not within the range searched
    why: str


@dataclass
class Forecast:
    nodes: float | None  # where the first SLO breaks (None: not below max_nodes)
    slo: str | None
    breaks: list[Break]
    saturation_nodes: float | None  # rho = 1
    unit_costs: UnitCosts
    capacity: Capacity
    assumptions: list[str]
    curve: list[dict[str, float | None]]  # N, rho, predicted p99 by class, 429 ratio, memory

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        where = f"~{self.nodes:.0f} nodes ({self.slo})" if self.nodes else "not below the range"
        sat = f"; CPU saturates at ~{self.saturation_nodes:.0f}" if self.saturation_nodes else ""
        return (
            f"forecast: first SLO breaks at {where}{sat} "
            f"({self.capacity.cores:g} cores x {self.capacity.replicas})"
        )


def share(cores: float, machine_cores: float | None, others: float | None) -> float:
    """The cores an API server gets: its own, or on a shared host what the rest leaves of
    it, whichever is less (never below a sliver: rho stays finite)."""
    if machine_cores is None or others is None:
        return cores
    return max(0.05, min(cores, machine_cores - max(0.0, others)))


@dataclass
class Model:
    """Unit costs and laws fitted on small runs; `forecast` for any capacity and scaling."""

    unit: UnitCosts
    work: dict[str, Law]  # feature -> per-agent law
    # SLO class -> p99 on an idle server, a + b*N, and a + b*E with E the watch events/s the
    # server sends; the larger counts: fan-out delays writes at low CPU (watch-heavy:
    # break-glass p99 0.46 s at 194 events/s, 1.2 s at 1,745, the API server at 0.18 cores)
    base_latency: dict[str, Line]
    seats_per_agent: Line | None
    level_seats: float | None
    resident: Line | None  # API server memory without LISTs in flight, a + b*N (bytes)
    list_bytes_per_agent: Line | None  # bytes of LIST responses per agent per second
    fit_nodes: list[int]
    pods_share_of_list_bytes: float  # how much of LIST bytes are pods (for object scaling)
    others: Line | None = None  # the machine's cores besides the API server, a + b*N
    base_by_events: dict[str, Line] = field(default_factory=dict)  # see base_latency

    def available(self, n: float, cap: Capacity) -> float:
        """The cores the API server gets at n nodes (see `share`)."""
        return share(cap.cores, cap.machine_cores, self.others(n) if self.others else None)

    def demand(self, n: float, sc: Scaling, cap: Capacity) -> tuple[float, dict[str, float]]:
        """API server cores needed at n nodes, per replica, and the work behind it."""
        agents = sc.agents_per_node * n
        per = {
            "list_bytes": sc.list_bytes * sc.list_cost,
            "watch_events": sc.watch_events,
            "watches": 1.0,
            "requests": 1.0,
        }
        work = {
            k: (max(0.0, law.background(n)) + agents * max(0.0, law.per_agent(n)) * per[k])
            / cap.replicas
            for k, law in self.work.items()
        }
        return self.unit.cpu(work), work

    def forecast(
        self,
        cap: Capacity,
        sc: Scaling = Scaling(),
        slo_p99: dict[str, float] | None = None,
        throttled_max: float = 0.01,
        max_nodes: float = 20000,
        assumptions: Sequence[str] = (),
    ) -> Forecast:
        """Walk N upward (1 % steps) until each SLO breaks; the first is the forecast."""
        slo_p99 = slo_p99 or DEFAULT_P99
        breaks: dict[str, Break] = {}
        sat = None
        curve: list[dict[str, float | None]] = []
        n = float(max(1, min(self.fit_nodes)))
        while n <= max_nodes:
            cpu, work = self.demand(n, sc, cap)
            rho = cpu / self.available(n, cap)
            if sat is None and rho >= 1:
                sat = n
            q = 1 / (1 - rho) if rho < 1 else math.inf
            row: dict[str, float | None] = {"nodes": n, "rho": rho, "cores": cpu}
            events = work.get("watch_events", 0.0)
            for cls, base in self.base_latency.items():
                by_events = self.base_by_events.get(cls)
                p = max(0.0, base(n), by_events(events) if by_events else 0.0) * q
                row[f"p99_{cls}"] = p if math.isfinite(p) else None
                limit = slo_p99.get(cls)
                if limit and p > limit and cls not in breaks:
                    breaks[cls] = Break(cls, n, f"p99 {cls} {_s(p)} > {limit:g}s at rho {rho:.2f}")
            throttled = max(0.0, 1 - 1 / rho) if rho > 0 else 0.0
            row["throttled_ratio"] = throttled
            if throttled > throttled_max and "throttled" not in breaks:
                breaks["throttled"] = Break(
                    "throttled",
                    n,
                    f"demand {rho:.2f}x the cores: "
                    f"APF sheds {throttled:.1%} (> {throttled_max:.0%})",
                )
            seats_limit = cap.level_seats or self.level_seats
            if self.seats_per_agent and seats_limit:
                seats = (
                    sc.agents_per_node * n * max(0.0, self.seats_per_agent(n)) * q / cap.replicas
                )
                row["seats"] = seats if math.isfinite(seats) else None
                if seats > seats_limit and "seats" not in breaks:
                    breaks["seats"] = Break(
                        "seats",
                        n,
                        f"{_s(seats, '')} seats wanted of "
                        f"{seats_limit:g}: APF queues fill, then rejects",
                    )
            if self.resident and cap.memory_bytes and self.list_bytes_per_agent:
                # bytes of LIST responses in flight: rate x latency (Little's law)
                lat = max(0.0, self.base_latency.get("read-cluster", Line(1, 0, None))(n)) * q
                inflight = (
                    sc.agents_per_node
                    * n
                    * self.list_bytes_per_agent(n)
                    * sc.list_bytes
                    * lat
                    / cap.replicas
                )
                mem = self.resident(n) + LIST_MEMORY_FACTOR * inflight
                row["memory_bytes"] = mem if math.isfinite(mem) else None
                if mem > cap.memory_bytes and "memory" not in breaks:
                    breaks["memory"] = Break(
                        "memory",
                        n,
                        f"{mem / 2**30:.2f} GiB wanted of {cap.memory_bytes / 2**30:.2f}: OOM kill",
                    )
            curve.append(row)
            if len(breaks) == len(slo_p99) + 3 or (rho > 2 and breaks):
                break
            n = max(n + 1, n * 1.01)
        found = sorted((b for b in breaks.values() if b.nodes), key=lambda b: b.nodes or 0)
        first = found[0] if found else None
        return Forecast(
            first.nodes if first else None,
            first.slo if first else None,
            found,
            sat,
            self.unit,
            cap,
            list(assumptions),
            curve[:: max(1, len(curve) // 60)],
        )


DEFAULT_P99 = {
    "mutating": 1.0,
    "read-resource": 1.0,
    "read-namespace": 5.0,
    "read-cluster": 30.0,
    "break-glass": 1.0,
}


def _s(x: float, unit: str = "s") -> str:
    return "inf" if not math.isfinite(x) else f"{x:.3g}{unit}"


def _law(xs: Sequence[float], ys: Sequence[float]) -> Line:
    if len(set(xs)) < 2:  # one size: no growth is measurable; hold it flat
        return Line(sum(ys) / len(ys), 0.0, None)
    return fit_nonnegative(xs, ys)


def _rising(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """A law that cannot fall with N (an idle server's latency, the rest of the machine's
    load). A falling fit on small sizes is noise, and that noise is one-sided (a transient
    only ever adds latency or load): held flat at the lowest value seen. Seen: mutating p99
    0.78 s at 40 nodes (KWOK still patching the new objects), 0.39 s at 80, ~0.2 s x 1/(1-rho)
    at every size after."""
    line = _law(xs, ys)
    return line if line.slope >= 0 else Line(min(ys), 0.0, None)


def fit_model(
    samples: Sequence[RunSample], cores: float, machine_cores: float | None = None
) -> Model:
    """The model from small runs (all of them passing, ideally); `cores` is the capacity the
    runs had (a quota, or the machine), `machine_cores` the host's when the API server
    shared it: each latency is then read at the utilisation of what the rest left it."""
    runs = [s for s in samples if s.agents and s.cpu_busy is not None]
    if not runs:
        raise ValueError("no run with agents and a measured API server CPU")
    unit = fit_unit_costs(runs, cores)

    def avail(s: RunSample) -> float:
        return share(cores, machine_cores, s.others_cores)

    ns = [float(s.nodes) for s in runs]
    work = {
        k: Law(
            _law(ns, [max(0.0, s.work[k] - s.background[k]) / s.agents for s in runs]),
            _law(ns, [s.background[k] for s in runs]),
        )
        for k in FEATURES
    }
    base: dict[str, Line] = {}
    by_events: dict[str, Line] = {}
    for cls in sorted({c for s in runs for c in s.p99}):
        pts = [
            (s, s.p99[cls] * max(0.05, 1 - s.cpu_busy / avail(s)))
            for s in runs
            if cls in s.p99 and s.cpu_busy is not None
        ]
        ys = [y for _, y in pts]
        base[cls] = _rising([float(s.nodes) for s, _ in pts], ys)
        by_events[cls] = _rising([s.work["watch_events"] for s, _ in pts], ys)
    seats = [
        (float(s.nodes), s.seats_per_agent * max(0.05, 1 - (s.cpu_busy or 0) / avail(s)))
        for s in runs
        if s.seats_per_agent is not None
    ]
    mem = [(float(s.nodes), s.rss_bytes) for s in runs if s.rss_bytes]
    lb = [(float(s.nodes), sum(s.list_bytes_by_resource.values()) / s.agents) for s in runs]
    total_lb = sum(sum(s.list_bytes_by_resource.values()) for s in runs)
    pods_lb = sum(s.list_bytes_by_resource.get("pods", 0.0) for s in runs)
    levels = [s.level_seats for s in runs if s.level_seats]
    others = [(float(s.nodes), s.others_cores) for s in runs if s.others_cores is not None]
    return Model(
        unit,
        work,
        base,
        _law([x for x, _ in seats], [y for _, y in seats]) if seats else None,
        levels[-1] if levels else None,
        _law([x for x, _ in mem], [y for _, y in mem]) if mem else None,
        _law([x for x, _ in lb], [y for _, y in lb]) if lb else None,
        sorted(s.nodes for s in runs),
        pods_lb / total_lb if total_lb else 1.0,
        _rising([x for x, _ in others], [y for _, y in others]) if others else None,
        by_events,
    )
