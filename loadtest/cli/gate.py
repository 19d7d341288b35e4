"""The rollout gate's subcommands: compare, compare-results, report, sweep, incident.

Kept apart from main.py so both can change independently; main.build_parser calls `register`.
Each command returns 0 on a passing verdict and 1 on a failing one, for CI.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from loadtest.cli.common import check_target, log
from loadtest.cli.runs import load_args, measured_run, out_dir, refuse_grown_inventory
from loadtest.clusters import cgroups
from loadtest.errors import ConfigError, LoadtestError
from loadtest.gate import compare, scaling
from loadtest.report.comparison import load_comparison, write_comparison_report
from loadtest.report.mitigation import write_mitigation_report
from loadtest.report.parts import draw, failure
from loadtest.report.run import write_run_report
from loadtest.report.sweep import write_sweep_report
from loadtest.verdict import slo


def _runner(args: argparse.Namespace, nodes: int, agents: int) -> Callable[[str, Path], Path]:
    """One bounded main-job run per call, on the named cluster, same inventory every time."""

    def run(profile: str, out_root: Path) -> Path:
        return measured_run(args, nodes, agents, profile, out_root).execute()

    return run


def _write(out: Path, name: str, data: dict[str, object]) -> Path:
    p = out / name
    p.write_text(json.dumps(data, indent=2, default=str))
    return p


def _finish_comparison(c: compare.Comparison, out: Path) -> int:
    """The verdict first (printed, exit code fixed), then the report, which may fail alone."""
    _write(out, "comparison.json", c.to_json())
    for line in c.lines():
        print(line, flush=True)
    log(f"comparison: {out / 'comparison.json'}")
    draw(lambda: write_comparison_report(c, out), log)
    return 0 if c.verdict == "pass" else 1


def cmd_compare(args: argparse.Namespace) -> int:
    budgets = compare.parse_budgets(args.budget or compare.DEFAULT_BUDGETS)
    if args.rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    check_target(args)
    with out_dir(args.out, f"compare-{args.baseline}-vs-{args.candidate}") as out:
        run = _runner(args, args.nodes, args.agents)
        a, b, machine = compare.interleave(
            args.baseline, args.candidate, args.rounds, out, run, log
        )
    return _finish_comparison(
        compare.compare_runs(a, b, budgets, machine, machine["schedule"]), out
    )


def cmd_compare_results(args: argparse.Namespace) -> int:
    budgets = compare.parse_budgets(args.budget or compare.DEFAULT_BUDGETS)
    c = compare.compare_runs(
        compare.run_dirs(args.baseline_dir), compare.run_dirs(args.candidate_dir), budgets
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        return _finish_comparison(c, args.out)
    with out_dir(Path("results"), "compare-results") as out:
        return _finish_comparison(c, out)


def _write_report(d: Path) -> Path:
    """The report of whatever folder this is: mitigation, comparison, break point, sweep
    or run."""
    if d.name == "mitigation" and (d / "comparison.json").exists():
        return write_mitigation_report(d)
    if (d / "comparison.json").exists():
        return write_comparison_report(load_comparison(d), d)
    if (d / "breakpoint.json").exists():
        from loadtest.report.breakpoint import write_breakpoint_report

        return write_breakpoint_report(d)
    if (d / "sweep.json").exists():
        return write_sweep_report(scaling.load_sweep(d), d)
    return write_run_report(d)


def cmd_report(args: argparse.Namespace) -> int:
    if not args.results.is_dir():
        raise ConfigError(f"{args.results}: no such folder")
    try:
        path = _write_report(args.results)
    except LoadtestError:
        raise
    except Exception as e:  # noqa: BLE001 - a plot that cannot be drawn: one line, no trace
        raise LoadtestError(f"report not drawn: {failure(e)}") from None
    print(path)
    return 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 20,50,100, got {text!r}") from None
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError("a sweep needs at least two positive sizes")
    return sizes


def _sweep(args: argparse.Namespace, sizes: list[int], label: str) -> scaling.Sweep:
    check_target(args)
    refuse_grown_inventory(args, sizes[0])
    # the LIST SLO line of the fit: the flag, else the SLOs in force (--slo, else defaults)
    slo_list_p99 = (
        args.slo_list_p99
        or slo.load_slos(Path(args.slo) if args.slo else None).api.read_cluster_p99_s
    )
    points = []
    with out_dir(args.out, f"{label}-{args.profile}") as out:
        for n in sizes:  # ascending: the inventory only grows, so seeding stays idempotent
            agents = max(1, round(n * args.agents_per_node))
            load = compare.machine_load()
            log(
                f"sweep: {n} nodes, {agents} agents (load average {load['loadavg_1m']:.1f} "
                f"on {load['cpus']:g} cores)"
            )
            run_dir = _runner(args, n, agents)(args.profile, out / "runs")
            points.append(scaling.point_from_run(run_dir, load["loadavg_1m"]))
    sweep = scaling.analyse(args.profile, points, cores=args.cores, slo_list_p99_s=slo_list_p99)
    sweep = scaling.with_forecast(
        sweep,
        args.slo or "",
        cores=args.cores,
        memory_bytes=(
            cgroups.parse_bytes(args.apiserver_memory) if args.apiserver_memory else None
        ),
    )
    _write(out, "sweep.json", sweep.to_json())
    for line in sweep.lines():
        print(line, flush=True)
    log(f"sweep: {out / 'sweep.json'}")
    draw(lambda: write_sweep_report(sweep, out), log)
    return sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    _sweep(args, args.sizes, "sweep")
    return 0


def cmd_incident(args: argparse.Namespace) -> int:
    """Passes at a small inventory, fails at a large one, and names the cause (an e2e test)."""
    sizes = sorted({args.small, args.large, *(args.between or [])})
    sweep = _sweep(args, sizes, "incident")
    small, large = sweep.points[0], sweep.points[-1]
    ok = small.verdict == "pass" and large.verdict == "fail"
    for p in (small, large):
        log(
            f"incident replay: {p.nodes} nodes {p.verdict.upper()}"
            + (f" ({', '.join(p.failed_slos)})" if p.failed_slos else "")
            + (f", machine load average {p.loadavg_1m:.1f}" if p.loadavg_1m is not None else "")
        )
    log(
        "incident "
        + (
            "reproduced"
            if ok
            else "NOT reproduced: expected a pass at "
            f"{small.nodes} nodes and a failure at {large.nodes}"
        )
    )
    return 0 if ok else 1


def _budget_arg(p: argparse.ArgumentParser) -> None:
    defaults = " ".join(compare.DEFAULT_BUDGETS).replace("%", "%%")  # argparse formats help
    p.add_argument(
        "--budget",
        action="append",
        metavar="RULE",
        help=f"METRIC:+N%%, METRIC:+N or METRIC:<=N (repeatable; default: "
        f"{defaults}); metrics: {', '.join(compare.METRICS)}",
    )


def _sweep_args(p: argparse.ArgumentParser) -> None:
    load_args(p, agents=False)
    p.add_argument("--profile", default="telemetry-v2")
    p.add_argument("--agents-per-node", type=float, default=1.0)
    p.add_argument(
        "--cores",
        type=float,
        default=None,
        help="API server cores available (default: this machine's)",
    )
    p.add_argument(
        "--slo-list-p99",
        type=float,
        default=None,
        help="LIST p99 SLO in seconds (default: the cluster-scope read SLO in "
        "force, from --slo or the defaults: 30)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="interleaved runs of two profiles, verdict on budgets")
    load_args(c)
    c.add_argument("--baseline", required=True, help="profile A (e.g. telemetry-v1)")
    c.add_argument("--candidate", required=True, help="profile B (e.g. telemetry-v2)")
    c.add_argument("--rounds", type=int, default=2, help="A,B pairs (>= 2 for an interval)")
    _budget_arg(c)
    c.set_defaults(func=cmd_compare)

    cr = sub.add_parser("compare-results", help="compare two existing results folders")
    cr.add_argument("baseline_dir", type=Path, help="a run, or a folder of runs (rounds)")
    cr.add_argument("candidate_dir", type=Path)
    cr.add_argument("--out", type=Path, help="where comparison.json and the report go")
    _budget_arg(cr)
    cr.set_defaults(func=cmd_compare_results)

    r = sub.add_parser("report", help="HTML report of a run, comparison or sweep folder")
    r.add_argument("results", type=Path)
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("sweep", help="runs over inventory sizes, scaling fit, break point")
    _sweep_args(s)
    s.add_argument("--sizes", type=_sizes, default=[20, 50, 100], help="node counts")
    s.set_defaults(func=cmd_sweep)

    i = sub.add_parser("incident", help="replay the incident: pass small, fail large")
    _sweep_args(i)
    i.add_argument("--small", type=int, default=10, help="nodes where it must pass")
    i.add_argument("--large", type=int, default=100, help="nodes where it must fail")
    i.add_argument(
        "--between",
        type=lambda t: [int(x) for x in t.split(",") if x],
        help="sizes in between (e.g. 40): three sizes let the fit be checked",
    )
    i.set_defaults(func=cmd_incident)
