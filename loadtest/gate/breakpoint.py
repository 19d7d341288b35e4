"""Where it breaks: the smallest node count at which any SLO fails, measured.

The search: fit runs at small sizes, a forecast from them (loadtest.gate.capacity), then a
ladder upward from below the forecast (fast far from it, 20 % steps near it: one step of
1.22 is a bracket of +-10 % around its middle), and bisection once a step failed after a
larger jump. The inventory only grows on the ladder (seeding is idempotent); a bisection
step below the largest size seeded first trims the objects beyond it (names are
deterministic, so trimming to N leaves exactly the inventory of N). Every step is a full
measured run kept under DIR; the search is bounded in steps and in time, and
breakpoint.json is rewritten after each step.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest.config import InventorySpec

TOLERANCE = 0.10


@dataclass
class Step:
    nodes: int
    agents: int
    phase: str  # fit, ladder, bisect
    verdict: str  # pass, fail (an SLO), error (nothing measured: the search stops)
    failed_slos: list[str] = field(default_factory=list)
    first_failed: str | None = None
    run_dir: str = ""
    seconds: float = 0.0
    loadavg_1m: float | None = None
    cpu_cores: float | None = None  # the API server's, during the load


@dataclass(frozen=True)
class Bounds:
    min_nodes: int = 10
    max_nodes: int = 2000
    max_steps: int = 10
    max_seconds: float = 3600.0
    tolerance: float = TOLERANCE

    def done_ratio(self) -> float:
        """hi/lo at which the bracket is within +-tolerance of its middle."""
        return (1 + self.tolerance) / (1 - self.tolerance)


def bracket(steps: list[Step]) -> tuple[int | None, int | None]:
    """(largest passing size below the smallest failing one, smallest failing size)."""
    fails = [s.nodes for s in steps if s.verdict == "fail"]
    hi = min(fails) if fails else None
    passes = [s.nodes for s in steps if s.verdict == "pass" and (hi is None or s.nodes < hi)]
    return (max(passes) if passes else None), hi


def fit_sizes(b: Bounds) -> list[int]:
    """The small sizes the forecast is fitted on: the floor and twice it."""
    return (
        [b.min_nodes, min(b.max_nodes, 2 * b.min_nodes)]
        if b.max_nodes > b.min_nodes
        else [b.min_nodes]
    )


def next_size(steps: list[Step], forecast: float | None, b: Bounds) -> tuple[int, str] | None:
    """The next size to measure and why (phase), or None when the search is done."""
    if steps and steps[-1].verdict == "error":
        return None  # the harness could not measure: no size is known to pass or fail
    done = {s.nodes for s in steps}
    lo, hi = bracket(steps)
    for n in fit_sizes(b):
        if n not in done and hi is None:
            return n, "fit"
    if hi is not None and lo is None:
        # failed at the floor: nothing smaller is searched
        return None
    if hi is not None and lo is not None:
        if hi <= lo * b.done_ratio() or hi - lo <= 1:
            return None
        mid = round(math.sqrt(lo * hi))
        return (mid, "bisect") if mid not in done and lo < mid < hi else None
    assert lo is not None
    if lo >= b.max_nodes:
        return None
    step = b.done_ratio()
    if forecast and lo < forecast / 1.5:
        # far below the forecast: jump to just under it (no more than x3 at once)
        want = max(min(forecast / step, 3 * lo), lo * step)
    elif forecast and lo < forecast * 1.5:
        want = lo * step  # near the forecast: steps that leave a +-10 % bracket
    else:
        want = lo * 2.0  # no forecast, or far past it: it was wrong, double
    size = min(round(want), b.max_nodes)
    return (size, "ladder") if size > lo else None


Runner = Callable[[int, int, str], Step]  # nodes, agents, phase -> a measured step
Forecaster = Callable[[list[Step]], dict[str, Any] | None]  # steps so far -> forecast json


@dataclass
class Search:
    """The search's state; `result` is breakpoint.json."""

    profile: str
    agents_per_node: float
    bounds: Bounds
    steps: list[Step] = field(default_factory=list)
    predicted: dict[str, Any] | None = None  # the forecast made before the ladder
    stopped: str = ""
    started: float = field(default_factory=time.time)

    def result(self) -> dict[str, Any]:
        lo, hi = bracket(self.steps)
        return {
            "version": 1,
            "profile": self.profile,
            "agents_per_node": self.agents_per_node,
            "bounds": asdict(self.bounds),
            "bracket": [lo, hi],
            "predicted": self.predicted,
            "forecast_error": forecast_error(self.predicted, lo, hi),
            "steps": [asdict(s) for s in self.steps],
            "stopped": self.stopped,
            "seconds": round(time.time() - self.started, 1),
        }

    def progress(self) -> str:
        failed = sorted({x for s in self.steps for x in s.failed_slos})
        lo, hi = bracket(self.steps)
        return (
            f"{len(self.steps)} step(s), bracket [{lo}, {hi}], failed so far: "
            f"{', '.join(failed) or 'nothing'}"
        )


def forecast_error(
    predicted: dict[str, Any] | None, lo: int | None, hi: int | None
) -> float | None:
    """(forecast - measured) / measured, the measured break taken as the bracket's middle."""
    n = (predicted or {}).get("nodes")
    if not n or lo is None or hi is None:
        return None
    measured = (lo + hi) / 2
    return (n - measured) / measured


def search(
    s: Search, run: Runner, forecaster: Forecaster, out: Path, log: Callable[[str], None]
) -> Search:
    """Run steps until the bracket is tight, a bound is hit, or nothing is left to try."""
    per_step: list[float] = []
    while True:
        # Two passing sizes are the least a growth law needs: when the second fit size
        # already failed, bisection finds a second passing one first.
        passes = [x for x in s.steps if x.verdict == "pass"]
        nxt = next_size(s.steps, (s.predicted or {}).get("nodes"), s.bounds)
        if s.predicted is None and (len(passes) >= 2 or nxt is None):
            s.predicted = {
                **(forecaster(passes) or {"nodes": None, "why": "no passing run to forecast from"}),
                "made_after_steps": len(s.steps),
            }
            log(f"breakpoint: predicted {s.predicted.get('line') or s.predicted}")
            nxt = next_size(s.steps, s.predicted.get("nodes"), s.bounds)
        if nxt is None:
            lo, hi = bracket(s.steps)
            last = s.steps[-1] if s.steps else None
            s.stopped = (
                "bracket found"
                if lo is not None and hi is not None
                else f"step {len(s.steps)} could not be measured: "
                f"{last.failed_slos[0] if last.failed_slos else '?'}"
                if last and last.verdict == "error"
                else "nothing left within the bounds"
            )
            break
        if len(s.steps) >= s.bounds.max_steps:
            s.stopped = f"step bound ({s.bounds.max_steps}) reached"
            break
        elapsed = time.time() - s.started
        guess = max(per_step) if per_step else 0.0
        if per_step and elapsed + guess > s.bounds.max_seconds:
            s.stopped = (
                f"time bound ({s.bounds.max_seconds:.0f}s) reached: {elapsed:.0f}s "
                f"spent, a step takes ~{guess:.0f}s"
            )
            break
        n, phase = nxt
        agents = max(1, round(n * s.agents_per_node))
        log(
            f"breakpoint step {len(s.steps) + 1}/{s.bounds.max_steps} ({phase}): {n} nodes, "
            f"{agents} agents; {s.progress()}"
        )
        t0 = time.time()
        step = run(n, agents, phase)
        step.seconds = round(time.time() - t0, 1)
        per_step.append(step.seconds)
        s.steps.append(step)
        log(
            f"breakpoint: {n} nodes {step.verdict.upper()}"
            + (
                f" (first failed: {step.first_failed}; all: {', '.join(step.failed_slos)})"
                if step.failed_slos
                else ""
            )
        )
        write(out, s)
    write(out, s)
    return s


def write(out: Path, s: Search) -> Path:
    p = out / "breakpoint.json"
    p.write_text(json.dumps(s.result(), indent=2, default=str))
    return p


# --- the inventory at a size ------------------------------------------------------------


def surplus(spec: InventorySpec, seeded_nodes: int) -> list[tuple[str, str, str]]:
    """(path, namespace, name) of objects an inventory of `seeded_nodes` has beyond `spec`
    (same shape, fewer nodes): what trimming to spec deletes. Pods before their nodes."""
    from loadtest.inventory import seed as inv

    big = spec.model_copy(update={"nodes": seeded_nodes})
    out = []
    for p in range(spec.pods, big.pods):
        _, j = inv.pod_placement(big, p)
        ns = inv.namespace_name(big, j)
        out.append((f"/api/v1/namespaces/{ns}/pods", ns, inv.pod_name(big, p)))
    out += [("/api/v1/nodes", "", inv.node_name(big, i)) for i in range(spec.nodes, big.nodes)]
    return out


def trim(cluster: Any, spec: InventorySpec, seeded_nodes: int) -> int:
    """Delete what an inventory of `seeded_nodes` has beyond `spec`; returns how many went."""
    from loadtest.clusters.base import http_client
    from loadtest.errors import ClusterError

    gone = 0
    with http_client(cluster, timeout=60) as c:
        for path, _, name in surplus(spec, seeded_nodes):
            r = c.delete(f"{path}/{name}", params={"gracePeriodSeconds": "0"})
            if r.status_code not in (200, 202, 404):
                raise ClusterError(
                    f"trimming the inventory: DELETE {path}/{name}: HTTP "
                    f"{r.status_code} {r.text[:200]}"
                )
            gone += r.status_code != 404
    return gone


def step_from_run(run_dir: Path, phase: str, loadavg_1m: float | None) -> Step:
    """A measured run as a step: its verdict and the SLOs it failed, in evaluation order."""
    from loadtest.gate.compare import run_costs
    from loadtest.run.record import load_record

    s = load_record(run_dir)
    try:
        cpu = run_costs(run_dir)[0]["apiserver_cpu"]
    except (OSError, ValueError, KeyError):  # a run that broke early measured nothing
        cpu = None
    failed = [r.name for r in s.slo if r.status != "pass"]
    verdict = "pass" if not failed and s.verdict == "pass" else "fail"
    if s.failed is not None and not failed:
        failed = [f"run-error: {s.failed[:160]}"]
        # broken under load (an API server that died) is a failure; broken before any load
        # (KWOK, seeding, a port taken) measured nothing: an error that ends the search
        loaded = "measurements-started" in s.stages
        verdict = "fail" if loaded else "error"
    return Step(
        s.config.inventory.nodes if s.config else 0,
        s.agents,
        phase,
        verdict,
        failed,
        failed[0] if failed else None,
        str(run_dir),
        loadavg_1m=loadavg_1m,
        cpu_cores=cpu,
    )
