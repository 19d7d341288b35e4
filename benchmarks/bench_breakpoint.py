"""`make bench-breakpoint`: the capacity model's forecast against the measured break point.

Cases (each a `loadtest breakpoint` search on a fresh local cluster of its own, removed
afterwards; figures with the machine's load average):
  telemetry-v2   one agent per node, 3 pods per node: LIST-heavy
  watch-heavy    cluster-wide Lease and Node informers: watch events dominate
  quota          telemetry-v2 with the API server in a CPU quota: fitted at --fit-cores
                 (0.5), forecast for each of --carry-cores (1, 1.5) from those fit runs, then
                 each measured by its own search
Goal: each forecast within 25 % of the measured break point (the bracket's middle).

    python benchmarks/bench_breakpoint.py --cases telemetry-v2,watch-heavy,quota
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import log, table, write_result  # noqa: E402
from loadtest.gate import forecast  # noqa: E402

# the command as a module: no console script needed, and the checkout it runs is this one
LOADTEST = [sys.executable, "-m", "loadtest.cli"]
GOAL = 0.25


def search(
    name: str, profile: str, args: argparse.Namespace, out: Path, cores: float | None = None
) -> dict[str, Any]:
    """One breakpoint search on a fresh cluster; its breakpoint.json and the load around it."""
    cmd = [
        *LOADTEST,
        "breakpoint",
        "--provider",
        "local",
        "--name",
        name,
        "--profile",
        profile,
        "--min-nodes",
        str(args.min_nodes),
        "--max-nodes",
        str(args.max_nodes),
        "--max-steps",
        str(args.max_steps),
        "--max-minutes",
        str(args.max_minutes),
        "--duration",
        str(args.duration),
        "--pods-per-node",
        str(args.pods_per_node),
        "--out",
        str(out),
    ]
    if cores:
        cmd += ["--apiserver-cpu", str(cores)]
    if args.slo:
        cmd += ["--slo", str(args.slo)]
    before = os.getloadavg()[0]
    log(" ".join(cmd))
    try:
        subprocess.run(cmd, check=False)
    finally:
        subprocess.run(
            [*LOADTEST, "cluster", "down", "--provider", "local", "--name", name], check=False
        )
    found = sorted(out.glob(f"*-breakpoint-{profile}/breakpoint.json"))
    if not found:
        return {"error": "no breakpoint.json written", "command": cmd}
    data = json.loads(found[-1].read_text())
    return {
        "command": cmd,
        "dir": str(found[-1].parent),
        "loadavg_before": before,
        "loadavg_after": os.getloadavg()[0],
        "bracket": data["bracket"],
        "predicted": (data.get("predicted") or {}).get("nodes"),
        "predicted_slo": (data.get("predicted") or {}).get("slo"),
        "error": data.get("forecast_error"),
        "stopped": data["stopped"],
        "steps": [
            (s["nodes"], s["verdict"], s["first_failed"], s["loadavg_1m"]) for s in data["steps"]
        ],
        "fit_runs": fit_runs(data),
    }


def fit_runs(data: dict[str, Any]) -> list[str]:
    """The runs a search's forecast was fitted on: the passing ones before it was made."""
    made_after = (data.get("predicted") or {}).get("made_after_steps", 2)
    return [s["run_dir"] for s in data["steps"][:made_after] if s["verdict"] == "pass"]


def measured(r: dict[str, Any]) -> float | None:
    lo, hi = r.get("bracket") or (None, None)
    return (lo + hi) / 2 if lo is not None and hi is not None else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", default="telemetry-v2,watch-heavy,quota")
    p.add_argument("--min-nodes", type=int, default=50)
    p.add_argument("--max-nodes", type=int, default=2000)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--max-minutes", type=float, default=40)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--pods-per-node", type=int, default=3)
    p.add_argument("--fit-cores", type=float, default=0.5)
    p.add_argument("--carry-cores", default="1,1.5")
    p.add_argument("--out", type=Path, default=Path("results/bench-breakpoint"))
    p.add_argument(
        "--slo",
        type=Path,
        help="SLO file for every search (e.g. DNS loosened on "
        "a machine shared with other work: DNS is not what the model forecasts)",
    )
    args = p.parse_args()
    rows, results = [], {}
    for case in args.cases.split(","):
        if case in ("telemetry-v2", "watch-heavy"):
            r = search(f"bench-bp-{case}", case, args, args.out / case)
            results[case] = r
            rows.append(
                (
                    case,
                    "here",
                    r.get("predicted"),
                    measured(r),
                    r.get("error"),
                    r.get("loadavg_before"),
                )
            )
        elif case == "quota":
            fit = search(
                "bench-bp-q0", "telemetry-v2", args, args.out / "quota-fit", cores=args.fit_cores
            )
            results["quota-fit"] = fit
            rows.append(
                (
                    "quota",
                    f"{args.fit_cores:g} cores (fit)",
                    fit.get("predicted"),
                    measured(fit),
                    fit.get("error"),
                    fit.get("loadavg_before"),
                )
            )
            for c in (float(x) for x in args.carry_cores.split(",")):
                fc = (
                    forecast.forecast_from_runs(
                        [Path(d) for d in fit.get("fit_runs", [])],
                        cores=args.fit_cores,
                        forecast_cores=c,
                        slo_file=str(args.slo or ""),
                    )
                    if fit.get("fit_runs")
                    else {"nodes": None}
                )
                m = search(
                    f"bench-bp-q{c:g}".replace(".", "-"),
                    "telemetry-v2",
                    args,
                    args.out / f"quota-{c:g}",
                    cores=c,
                )
                got = measured(m)
                nodes = fc.get("nodes")
                err = (nodes - got) / got if nodes and got else None
                results[f"quota-{c:g}"] = {
                    **m,
                    "carried_forecast": fc.get("nodes"),
                    "carried_slo": fc.get("slo"),
                    "carried_error": err,
                }
                rows.append(
                    (
                        "quota",
                        f"{c:g} cores (carried from {args.fit_cores:g})",
                        fc.get("nodes"),
                        got,
                        err,
                        m.get("loadavg_before"),
                    )
                )
        else:
            raise SystemExit(f"unknown case {case!r} (telemetry-v2, watch-heavy, quota)")
    print(
        table(
            rows,
            [
                "case",
                "capacity",
                "forecast nodes",
                "measured (bracket middle)",
                "error",
                "load avg",
            ],
        )
    )
    ok = [abs(r[4]) <= GOAL for r in rows if r[4] is not None]
    print(f"within {GOAL:.0%}: {sum(ok)} of {len(rows)} ({len(rows) - len(ok)} not measured)")
    write_result("breakpoint", {"rows": rows, "results": results, "goal": GOAL})
    return 0


if __name__ == "__main__":
    sys.exit(main())
