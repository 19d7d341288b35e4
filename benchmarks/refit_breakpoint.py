"""Forecast again from recorded break-point searches, with today's capacity model.

A search keeps every step's run: the forecast can be made again from its fit runs (the
passing ones before its forecast was made) for any API server cores, and set against the
brackets that were measured, without measuring again. For the same fit, `--cores` carries a
quota over (fit at 0.5, forecast 1 and 1.5) as `make bench-breakpoint` does.

    python benchmarks/refit_breakpoint.py FIT_DIR [--cores 0.5,1,1.5] \
        [--measured 1=SEARCH_DIR ...] [--slo FILE]

FIT_DIR and SEARCH_DIR are `loadtest breakpoint` output folders (with breakpoint.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_breakpoint import fit_runs, measured  # noqa: E402
from benchmarks.common import table, write_result  # noqa: E402
from loadtest.gate import forecast  # noqa: E402


def search(d: Path) -> dict[str, Any]:
    found = sorted(d.glob("**/breakpoint.json"))
    if not found:
        raise SystemExit(f"{d}: no breakpoint.json below it")
    data: dict[str, Any] = json.loads(found[-1].read_text())
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("fit", type=Path, help="the search whose fit runs are refitted")
    p.add_argument("--cores", default="", help="API server cores to forecast (default: the fit's)")
    p.add_argument(
        "--measured", action="append", default=[], metavar="CORES=DIR", help="a measured search"
    )
    p.add_argument("--slo", type=Path, help="SLO file the searches ran with")
    a = p.parse_args()
    fit = search(a.fit)
    runs = [Path(r) for r in fit_runs(fit)]
    if not runs:
        raise SystemExit(f"{a.fit}: no passing run before its forecast to fit on")
    known = {float(k): measured(search(Path(v))) for k, v in (m.split("=", 1) for m in a.measured)}
    cores = [float(c) for c in a.cores.split(",") if c] or [0.0]
    rows, out = [], []
    for c in cores:
        fc = forecast.forecast_from_runs(runs, forecast_cores=c or None, slo_file=str(a.slo or ""))
        got = known.get(c) if c else measured(fit)
        err = (fc["nodes"] - got) / got if fc["nodes"] and got else None
        rows.append((c or "the fit's", fc["nodes"], fc["slo"], got, err))
        out.append({"cores": c or None, "forecast": fc, "measured_middle": got, "error": err})
    print(table(rows, ["cores", "forecast nodes", "first SLO", "measured middle", "error"]))
    write_result(
        "refit-breakpoint", {"fit": str(a.fit), "runs": [str(r) for r in runs], "rows": out}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
