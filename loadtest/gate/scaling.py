"""The scaling law: cost against node count, fitted, and the node count where things break.

Model (why): an agent that LISTs cluster-wide objects pays for every object, so its cost is
linear in the cluster's size, c(N) = a + b*N; with one agent per node the total is
r*N*(a + b*N), quadratic. The API server saturates where that total reaches the cores it
has. LIST latency below saturation follows total work, so p99(N) = p0 + p2*N^2 is fitted
for the SLO. Both are checked: with three sizes or more, the fit of all but the largest
predicts the largest, and the measured value is set against the prediction.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest.gate.compare import run_costs
from loadtest.gate.fit import Line, fit_nonnegative
from loadtest.measurements.apiserver import ApiServerSummary
from loadtest.run.record import RecordLike, coerce, load_record
from loadtest.verdict import slo


@dataclass
class Point:
    """One sweep run, reduced to what the fit needs (and what the report shows)."""

    nodes: int
    agents: int
    cpu_cores: float | None  # API server, during load
    cpu_per_agent: float | None  # above the run's idle window; None when not measurable
    bytes_per_agent_s: float | None
    list_p99_s: float | None
    verdict: str
    failed_slos: list[str] = field(default_factory=list)
    run_dir: str = ""
    loadavg_1m: float | None = None  # the machine's, as the run started
    invalid: str = ""  # why the run measured no agent load ("" when it did)
    cpu_not_measurable: str = ""  # why cpu_per_agent is None (e.g. below idle)


def invalid_reason(s: RecordLike) -> str:
    """A run whose agents never got going measured the cluster, not the agents: keep it out
    of the fit (it still counts for the SLO verdict)."""
    m = coerce(s).measurements
    client = m.client
    if client is None or not client.requests:
        return "the agents sent no request (setup failed?)"
    api = m.apiserver or ApiServerSummary()
    access = api.harness_access
    if access and access.failed:
        # it fails the SLOs (api-availability), but what it cost is no point of a cost law
        return (
            f"the API server stopped answering ({access.failed} of "
            f"{access.scrapes} scrapes failed): not a cost measurement"
        )
    refused = (api.requests.throttled_429 + api.requests.errors_5xx) if api.requests else 0
    # Agents the API server refused (429, 5xx) are the finding, not a broken run.
    synced = slo.agents_synced(client, slo.ClientSLO())
    if synced and synced.status != "pass" and not refused:
        return f"only {synced.measured} agents synced, and the API server refused nothing"
    return ""


def point_from_run(run_dir: Path, loadavg_1m: float | None = None) -> Point:
    r = load_record(run_dir)
    v, notes = run_costs(run_dir)
    return Point(
        nodes=r.config.inventory.nodes if r.config else 0,
        agents=r.agents,
        cpu_cores=v["apiserver_cpu"],
        cpu_per_agent=v["apiserver_cpu_per_agent"],
        bytes_per_agent_s=v["bytes_per_agent_s"],
        list_p99_s=v["p99_list"],
        verdict=r.verdict or "?",
        failed_slos=[x.name for x in r.slo if x.status != "pass"],
        run_dir=str(run_dir),
        loadavg_1m=loadavg_1m,
        invalid=invalid_reason(r),
        cpu_not_measurable=next((n for n in notes if "above idle" in n), ""),
    )


def saturation_nodes(per_agent: Line, agents_per_node: float, cores: float) -> float | None:
    """Smallest N with agents_per_node * N * (a + b*N) >= cores; None if cost never grows."""
    qa, qb = agents_per_node * per_agent.slope, agents_per_node * per_agent.intercept
    if qa > 0:
        return (-qb + math.sqrt(qb * qb + 4 * qa * cores)) / (2 * qa)
    return cores / qb if qb > 0 else None


def slo_break_nodes(p99: Line, slo_s: float) -> float | None:
    """N where p0 + p2*N^2 reaches the SLO (p99 fitted against N squared)."""
    if p99.slope <= 0:
        return None
    left = (slo_s - p99.intercept) / p99.slope
    return math.sqrt(left) if left > 0 else 0.0


@dataclass
class Check:
    nodes: int
    what: str
    predicted: float
    measured: float

    @property
    def error(self) -> float:
        """How far the prediction was from the measurement, as a share of the measurement."""
        return (self.predicted - self.measured) / self.measured if self.measured else math.inf


@dataclass
class Sweep:
    profile: str
    points: list[Point]
    cores: float
    slo_list_p99_s: float
    agents_per_node: float
    idle_cores: float = 0.0  # API server CPU with no agents, averaged over the sizes
    cpu_fit: Line | None = None
    bytes_fit: Line | None = None
    p99_fit: Line | None = None
    saturation_nodes: float | None = None
    slo_break_nodes: float | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the capacity model's forecast (loadtest.gate.forecast), the one the break points come from
    forecast: dict[str, Any] | None = None

    @property
    def fitted(self) -> list[Point]:
        return [p for p in self.points if not p.invalid]

    def total_cpu(self, nodes: float) -> float | None:
        """The fitted API server CPU at a size: idle + r*N*(a + b*N)."""
        if self.cpu_fit is None:
            return None
        return self.idle_cores + self.agents_per_node * nodes * self.cpu_fit(nodes)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [{**asdict(c), "error": c.error} for c in self.checks]
        return d

    def lines(self) -> list[str]:
        out = [
            f"sweep {self.profile}: "
            + ", ".join(
                f"{p.nodes} nodes {p.verdict}" + (" (not fitted)" if p.invalid else "")
                for p in self.points
            )
        ]
        fc = self.forecast
        if fc:
            out.append(f"  {fc['line']} (capacity model: unit costs x work, 1/(1-rho))")
            out += [
                f"    {b['slo']} breaks at ~{b['nodes']:.0f} nodes: {b['why']}"
                for b in fc.get("breaks", [])
            ]
            out += [f"    assumption: {a}" for a in fc.get("assumptions", [])]
        law = "" if fc else (f"; saturates {self.cores:g} cores at N ~ {_n(self.saturation_nodes)}")
        if self.cpu_fit:
            out.append(
                f"  API server CPU per agent = {self.cpu_fit.intercept:.3g} + "
                f"{self.cpu_fit.slope:.3g}*N cores (+ {self.idle_cores:.2g} idle)" + law
            )
        if self.bytes_fit:
            out.append(
                f"  bytes per agent per s = {self.bytes_fit.intercept:.4g} + "
                f"{self.bytes_fit.slope:.4g}*N"
            )
        if self.p99_fit and not fc:
            out.append(
                f"  LIST p99 = {self.p99_fit.intercept:.3g} + {self.p99_fit.slope:.3g}*N^2"
                f" s; reaches {self.slo_list_p99_s:g} s at N ~ {_n(self.slo_break_nodes)}"
            )
        out += [
            f"  check at {c.nodes} nodes: {c.what} predicted {c.predicted:.4g}, measured "
            f"{c.measured:.4g} (prediction off by {c.error:+.0%} of the measurement)"
            for c in self.checks
        ]
        out += [f"  note: {n}" for n in self.notes]
        return out


def _n(x: float | None) -> str:
    return "never (cost does not grow)" if x is None else f"{x:.0f}"


def _fit(points: Sequence[Point], attr: str, square: bool = False) -> Line | None:
    pts = [
        (p.nodes**2 if square else p.nodes, getattr(p, attr))
        for p in points
        if getattr(p, attr) is not None
    ]
    if len({x for x, _ in pts}) < 2:
        return None
    return fit_nonnegative([x for x, _ in pts], [y for _, y in pts])


def analyse(
    profile: str, points: Sequence[Point], cores: float | None = None, slo_list_p99_s: float = 30.0
) -> Sweep:
    """Fit the sweep; with three sizes or more, check the fit of the rest on the largest."""
    everything = sorted(points, key=lambda p: p.nodes)
    pts = [p for p in everything if not p.invalid]
    ratios = {round(p.agents / p.nodes, 6) for p in pts if p.nodes}
    sw = Sweep(
        profile,
        everything,
        cores or float(os.cpu_count() or 1),
        slo_list_p99_s,
        agents_per_node=min(ratios) if ratios else 1.0,
    )
    sw.notes += [
        f"{p.nodes} nodes left out of the fit: {p.invalid}" for p in everything if p.invalid
    ]
    sw.notes += [f"{p.nodes} nodes: {p.cpu_not_measurable}" for p in pts if p.cpu_not_measurable]
    if len(ratios) > 1:
        sw.notes.append(f"agents per node vary ({sorted(ratios)}): the total uses the lowest")
    sw.cpu_fit = _fit(pts, "cpu_per_agent")
    sw.bytes_fit = _fit(pts, "bytes_per_agent_s")
    sw.p99_fit = _fit(pts, "list_p99_s", square=True)
    idle = [
        p.cpu_cores - p.agents * p.cpu_per_agent
        for p in pts
        if p.cpu_cores is not None and p.cpu_per_agent is not None
    ]
    sw.idle_cores = max(0.0, sum(idle) / len(idle)) if idle else 0.0
    if sw.cpu_fit:
        sw.saturation_nodes = saturation_nodes(
            sw.cpu_fit, sw.agents_per_node, sw.cores - sw.idle_cores
        )
    if sw.p99_fit:
        sw.slo_break_nodes = slo_break_nodes(sw.p99_fit, slo_list_p99_s)
    if len(pts) >= 3:
        sw.checks = _holdout(pts)
    else:
        sw.notes.append(f"{len(pts)} valid size(s): a third checks the fit")
    if any(p.cpu_cores is not None and p.cpu_cores > 0.8 * sw.cores for p in pts):
        sw.notes.append(
            "the API server used > 80% of the cores at some size: past saturation "
            "per-agent cost is capped by the machine, not the agent"
        )
    return sw


def _holdout(pts: Sequence[Point]) -> list[Check]:
    """Fit all but the largest size, predict the largest, set it against the measurement."""
    rest, last = pts[:-1], pts[-1]
    out = []
    for attr, square, what in (
        ("cpu_per_agent", False, "API server cores per agent"),
        ("bytes_per_agent_s", False, "bytes per agent per s"),
        ("list_p99_s", True, "LIST p99 s"),
    ):
        fit = _fit(rest, attr, square)
        measured = getattr(last, attr)
        if fit is not None and measured is not None:
            out.append(
                Check(last.nodes, what, fit(last.nodes**2 if square else last.nodes), measured)
            )
    return out


def load_sweep(d: Path) -> Sweep:
    """A sweep re-analysed; points are re-read from their runs when those are still there."""
    data = json.loads((d / "sweep.json").read_text())
    points = [
        point_from_run(Path(p["run_dir"]), p.get("loadavg_1m"))
        if p.get("run_dir") and (Path(p["run_dir"]) / "summary.json").exists()
        else Point(**p)
        for p in data["points"]
    ]
    sw = analyse(data["profile"], points, data["cores"], data["slo_list_p99_s"])
    if data.get("forecast"):  # as the sweep made it (refitting could differ in its cores)
        sw.forecast = data["forecast"]
        sw.saturation_nodes = sw.forecast.get("saturation_nodes")
        sw.slo_break_nodes = sw.forecast.get("nodes")
    return sw


def with_forecast(
    sw: Sweep, slo_file: str = "", memory_bytes: float | None = None, cores: float | None = None
) -> Sweep:
    """Set the capacity model's forecast on a sweep (fitted on its passing runs); its break
    points replace the law's. Without raw streams there is nothing to fit: the law stays,
    with a note."""
    from loadtest.gate.forecast import forecast_from_runs

    dirs = [
        Path(p.run_dir)
        for p in sw.fitted
        if p.verdict == "pass"
        and p.run_dir
        and (Path(p.run_dir) / "raw" / "apiserver.jsonl").exists()
    ]
    if not dirs:
        sw.notes.append(
            "no passing run with its raw API server stream: break points from "
            "the cost law, not the capacity model"
        )
        return sw
    try:
        sw.forecast = forecast_from_runs(
            dirs,
            agents_per_node=sw.agents_per_node,
            cores=cores,
            memory_bytes=memory_bytes,
            slo_file=slo_file,
        )
    except ValueError as e:
        sw.notes.append(f"capacity model not fitted: {e}")
        return sw
    sw.saturation_nodes = sw.forecast.get("saturation_nodes")
    sw.slo_break_nodes = sw.forecast.get("nodes")
    return sw
