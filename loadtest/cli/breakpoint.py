"""`loadtest breakpoint`: the measured break point, with the forecast set against it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from loadtest.cli.common import check_target, log, make_provider
from loadtest.cli.runs import load_args, measured_run, out_dir, refuse_grown_inventory
from loadtest.config import InventorySpec
from loadtest.errors import ConfigError, LoadtestError
from loadtest.gate import breakpoint as bp
from loadtest.gate.compare import machine_load
from loadtest.gate.target import TargetSpec, load_target
from loadtest.report.parts import draw


def _forecaster(args: argparse.Namespace, target: TargetSpec | None):  # noqa: ANN202
    from loadtest.clusters import cgroups
    from loadtest.gate import forecast

    memory = cgroups.parse_bytes(args.apiserver_memory) if args.apiserver_memory else None

    def fc(steps: list[bp.Step]) -> dict[str, Any] | None:
        dirs = [Path(s.run_dir) for s in steps if s.verdict == "pass"]
        if not dirs:
            return None
        kw = {
            "agents_per_node": args.agents_per_node,
            "cores": args.cores,
            "memory_bytes": memory,
            "slo_file": args.slo or "",
            "max_nodes": args.max_nodes * 4,
        }
        try:
            here = forecast.forecast_from_runs(dirs, **kw)
            loads = [s.loadavg_1m for s in steps if s.verdict == "pass" and s.loadavg_1m]
            if loads:  # neighbours' CPU is in the latencies measured, not in the model
                here["assumptions"].append(
                    f"the fit runs started at machine load average {min(loads):.1f}-"
                    f"{max(loads):.1f} on {os.cpu_count()} cores: other processes' CPU "
                    "(neighbours) is not modelled; it slows every step alike only if it "
                    "stays the same"
                )
            if target is not None:
                there = forecast.forecast_from_runs(dirs, **{**kw, "target": target})
                here["for_target"] = there
                log(f"breakpoint: for {target.name}: {there['line']}")
                for a in there["assumptions"]:
                    log(f"  assumption: {a}")
            return here
        except ValueError as e:  # too few windows, no CPU measured: say so, search anyway
            return {"nodes": None, "why": f"no forecast: {e}"}

    return fc


def cmd_breakpoint(args: argparse.Namespace) -> int:
    target = load_target(args.target) if args.target else None  # a bad file fails first
    bounds = bp.Bounds(args.min_nodes, args.max_nodes, args.max_steps, args.max_minutes * 60)
    if not 1 <= bounds.min_nodes < bounds.max_nodes:
        raise ConfigError(
            f"--min-nodes {bounds.min_nodes} must be >= 1 and below --max-nodes {bounds.max_nodes}"
        )
    check_target(args)
    refuse_grown_inventory(args, bounds.min_nodes)
    search = bp.Search(args.profile, args.agents_per_node, bounds)
    with out_dir(args.out, f"breakpoint-{args.profile}") as out:
        bp.search(search, _step_runner(args, search, out), _forecaster(args, target), out, log)
    res = search.result()
    lo, hi = res["bracket"]
    err = res["forecast_error"]
    log(
        f"breakpoint {args.profile}: passes at {lo}, fails at {hi} ({search.stopped}); "
        f"predicted {(res['predicted'] or {}).get('nodes') or 'nothing'}"
        + (f" (off by {err:+.0%} of the bracket's middle)" if err is not None else "")
    )
    log(f"breakpoint: {out / 'breakpoint.json'}")
    from loadtest.report.breakpoint import write_breakpoint_report

    draw(lambda: write_breakpoint_report(out), log)
    return 0 if lo is not None and hi is not None else 1


def _step_runner(args: argparse.Namespace, search: bp.Search, out: Path) -> bp.Runner:
    """Each step a full run under out/steps; a size below the inventory trims it first."""
    seeded = [0]

    def run(n: int, agents: int, phase: str) -> bp.Step:
        k = len(search.steps) + 1
        prefix = (
            f"[step {k}/{search.bounds.max_steps} {n} nodes; failed so far: "
            + (", ".join(sorted({x for s in search.steps for x in s.failed_slos})) or "none")
            + "]"
        )

        def step_log(msg: str) -> None:
            log(f"{prefix} {msg}")

        if n < seeded[0]:
            cluster = make_provider(args).get(args.name)
            if cluster is not None:
                spec = InventorySpec(nodes=n, pods_per_node=args.pods_per_node)
                step_log(
                    f"trimmed the inventory from {seeded[0]} nodes: "
                    f"{bp.trim(cluster, spec, seeded[0])} objects deleted"
                )
        load = machine_load()["loadavg_1m"]
        job = measured_run(args, n, agents, args.profile, out / "steps", step_log)
        try:
            job.execute()
        except LoadtestError as e:  # a step that broke the control plane is a failing step
            step_log(f"run failed: {e}")
        seeded[0] = n
        return bp.step_from_run(job.dir, phase, load)

    return run


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("breakpoint", help="measure the smallest node count where an SLO fails")
    load_args(b, agents=False)
    b.add_argument("--profile", default="telemetry-v2")
    b.add_argument("--agents-per-node", type=float, default=1.0)
    b.add_argument("--min-nodes", type=int, default=50, help="smallest size (fit at it and x2)")
    b.add_argument("--max-nodes", type=int, default=2000, help="largest size tried")
    b.add_argument("--max-steps", type=int, default=10, help="bound on measured runs")
    b.add_argument("--max-minutes", type=float, default=90, help="bound on the search's time")
    b.add_argument(
        "--cores",
        type=float,
        help="cores the API server gets here (default: its CPU quota, else 80%% of the machine)",
    )
    b.add_argument("--target", type=Path, help="the user's control plane (YAML): forecast there")
    b.set_defaults(func=cmd_breakpoint, duration=90.0, pods_per_node=3)
