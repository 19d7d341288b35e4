"""The one forecast the break-point search, the sweep and the incident replay all report:
fit the capacity model on measured runs, then forecast for this machine or a target."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.gate import capacity
from loadtest.gate.target import TargetSpec, consistent_cache, translate
from loadtest.run.record import RecordLike, coerce, load_record
from loadtest.verdict import slo

# DESIGN.md: pinned, the API server got ~1.57 of this machine's 2 cores beside etcd, KWOK and
# the harness.
SHARE_OF_MACHINE = 0.8


def fit_cores(
    summaries: Sequence[RecordLike], cores: float | None, machine_cores: float | None = None
) -> tuple[float, str]:
    """The cores the fit's API server had, and how that was known. machine_cores: the runs
    measured what the rest of their host (of that many cores) took; the model subtracts it."""
    quotas = {
        q for s in summaries if (q := coerce(s).cluster.get("apiserver_cpu_cores")) is not None
    }
    if cores:
        return cores, f"{cores:g} cores for the API server (given)"
    if len(quotas) == 1:
        q = float(quotas.pop())
        return q, f"{q:g} cores for the API server (its CPU quota)"
    if machine_cores:
        return machine_cores, (
            f"this machine's {machine_cores:g} cores for the API server, less what the rest takes"
        )
    cpus = float(os.cpu_count() or 1)
    return cpus * SHARE_OF_MACHINE, (
        f"{cpus * SHARE_OF_MACHINE:.2g} cores for the API server: {SHARE_OF_MACHINE:.0%} of "
        f"this machine's {cpus:g} (measured: ~1.57 of 2 when pinned, beside etcd, KWOK and "
        "the harness)"
    )


def _host_cores(records: Sequence[RecordLike]) -> float:
    """The cores of the host the runs measured (their machine summary), else this one's."""
    seen = {m.cpus for r in records if (m := coerce(r).measurements.machine) and m.cpus}
    return float(seen.pop()) if len(seen) == 1 else float(os.cpu_count() or 1)


def slo_limits(spec: slo.SLOSpec) -> tuple[dict[str, float], float]:
    a = spec.api
    return (
        {
            "mutating": a.mutating_p99_s,
            "read-resource": a.read_resource_p99_s,
            "read-namespace": a.read_namespace_p99_s,
            "read-cluster": a.read_cluster_p99_s,
            "break-glass": a.mutating_p99_s,
        },
        a.throttled_ratio_max,
    )


def forecast_from_runs(
    run_dirs: Sequence[Path],
    *,
    agents_per_node: float = 1.0,
    cores: float | None = None,
    memory_bytes: float | None = None,
    target: TargetSpec | None = None,
    slo_file: str = "",
    max_nodes: float = 20000,
    forecast_cores: float | None = None,
) -> dict[str, Any]:
    """Fit on the runs given (small, passing ones), forecast; JSON for reports.
    forecast_cores: this machine's API server with other cores than the fit had (a CPU
    quota carried over)."""
    records = [load_record(d) for d in run_dirs]
    samples = [capacity.sample_from_run(d) for d in run_dirs]
    machine = _host_cores(records) if all(s.others_cores is not None for s in samples) else None
    here, how = fit_cores(records, cores, machine)
    model = capacity.fit_model(samples, here, machine)
    notes = [
        how,
        f"fitted on {len(samples)} run(s) at {', '.join(map(str, model.fit_nodes))} "
        f"nodes ({model.unit.samples} scrape windows, r2 "
        f"{model.unit.r2 if model.unit.r2 is None else round(model.unit.r2, 3)})",
    ]
    if model.others is not None and machine is not None:
        rest = model.others
        notes.append(
            f"on this {machine:g}-core machine the API server gets at most what etcd, KWOK and "
            f"the harness leave: they took {rest.intercept:.2f} cores + {rest.slope * 1000:.2f} "
            "per 1,000 nodes (measured in the fit's load windows)"
        )
    if target is None:
        cap = capacity.Capacity(
            cores=forecast_cores or here, memory_bytes=memory_bytes, machine_cores=machine
        )
        sc = capacity.Scaling(agents_per_node=agents_per_node)
        notes.append(
            "the same machine, inventory shape and Kubernetes as the runs"
            + (f", the API server with {forecast_cores:g} cores instead" if forecast_cores else "")
        )
        max_n = max_nodes
    else:
        last = records[-1].config
        fit = {
            **(last.inventory.model_dump() if last else {}),
            "consistent_cache": consistent_cache(records[-1]),
        }
        cap, sc, more = translate(target, fit, model.pods_share_of_list_bytes)
        notes += more
        max_n = max(max_nodes, target.inventory.nodes * 2)
    limits, throttled = slo_limits(slo.load_slos(Path(slo_file) if slo_file else None))
    fc = model.forecast(cap, sc, limits, throttled, max_nodes=max_n, assumptions=notes)
    return {
        **fc.to_json(),
        "line": fc.line(),
        "target": target.name if target else "here",
        "unit_costs_text": unit_lines(model),
    }


def unit_lines(m: capacity.Model) -> list[str]:
    out = [f"idle {m.unit.idle_cores:.3g} cores"]
    for k, u in m.unit.per_unit.items():
        out.append(
            f"{k}: "
            + (
                "not measurable (did not vary in the runs)"
                if u is None
                else f"{u:.3g} {capacity.UNITS[k]}"
            )
        )
    return out
