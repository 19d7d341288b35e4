"""A sweep's report (beside sweep.json): how cost grew with node count, the fit and the
forecast, and the cause at each size that failed."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from loadtest.gate.scaling import Sweep
from loadtest.report.parts import figure_tag, items, page, table
from loadtest.report.run import cause_lines, write_run_report
from loadtest.run.record import load_record


def sweep_plots(sw: Sweep) -> list[str]:
    pts = sw.fitted
    if not pts:
        return []
    ns = [p.nodes for p in pts]
    # Far enough to show the predicted breaks, not so far that the measured points vanish.
    end = min(
        10 * max(ns),
        max(2 * max(ns), 1.15 * (sw.saturation_nodes or 0), 1.15 * (sw.slo_break_nodes or 0)),
    )
    grid = [end * i / 50 for i in range(51)]
    fig, axs = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axs[0]
    ax.plot(ns, [p.cpu_cores for p in pts], "o", label="measured")
    if sw.cpu_fit:
        ax.plot(grid, [sw.total_cpu(n) for n in grid], "-", label="fit: idle + r*N*(a+bN)")
        ax.axhline(sw.cores, color="r", ls=":", label=f"{sw.cores:g} cores")
        if sw.saturation_nodes:
            ax.axvline(sw.saturation_nodes, color="r", alpha=0.4)
    ax.set(title="API server CPU (cores)", xlabel="nodes")
    ax.legend(fontsize=7)
    ax = axs[1]
    ax.plot(ns, [p.bytes_per_agent_s for p in pts], "o")
    if sw.bytes_fit:
        ax.plot(grid, [sw.bytes_fit(n) for n in grid], "-")
    ax.set(title="bytes per agent per second", xlabel="nodes")
    ax = axs[2]
    ax.plot(ns, [p.list_p99_s for p in pts], "o")
    if sw.p99_fit:
        ax.plot(grid, [sw.p99_fit(n * n) for n in grid], "-", label="fit: p0+p2*N^2")
    ax.axhline(sw.slo_list_p99_s, color="r", ls=":", label="SLO")
    if sw.slo_break_nodes:
        ax.axvline(sw.slo_break_nodes, color="r", alpha=0.4)
    ax.set(title="LIST p99 (s)", xlabel="nodes")
    ax.legend(fontsize=7)
    for a in axs:
        a.grid(alpha=0.3)
    return [
        figure_tag(
            fig,
            "Scaling fit: measured points and fitted law; red: capacity, SLO and predicted break",
        )
    ]


def growth_lines(sw: Sweep) -> list[str]:
    """How cost grew with node count, smallest to largest fitted size; then why any size
    is not a cost measurement (e.g. an API server that went down)."""
    out = []
    if len(sw.fitted) >= 2:
        a, b = sw.fitted[0], sw.fitted[-1]
        for what, x, y in (
            ("bytes per agent per s", a.bytes_per_agent_s, b.bytes_per_agent_s),
            ("API server cores", a.cpu_cores, b.cpu_cores),
            ("LIST p99 s", a.list_p99_s, b.list_p99_s),
        ):
            if x and y:
                out.append(
                    f"{what}: {x:.4g} at {a.nodes} nodes -> {y:.4g} at {b.nodes} "
                    f"nodes (x{y / x:.1f} for x{b.nodes / a.nodes:.1f} nodes)"
                )
    return out + [f"at {p.nodes} nodes: {p.invalid}" for p in sw.points if p.invalid]


def write_sweep_report(sw: Sweep, out: Path) -> Path:
    rows = [
        (
            p.nodes,
            p.agents,
            p.cpu_cores,
            p.cpu_per_agent,
            p.bytes_per_agent_s,
            p.list_p99_s,
            p.verdict,
            ", ".join(p.failed_slos),
            p.loadavg_1m,
        )
        for p in sw.points
    ]
    largest = sw.points[-1]
    cause: list[str] = []
    if largest.run_dir and (Path(largest.run_dir) / "summary.json").exists():
        cause = cause_lines(load_record(Path(largest.run_dir)))
        write_run_report(Path(largest.run_dir))
    html_ = page(
        f"Scaling sweep: {sw.profile}",
        [
            ("Fit and prediction", items(sw.lines())),
            ("How cost grew with node count", items(growth_lines(sw))),
            (f"Cause at {largest.nodes} nodes", items(cause)),
            ("Plots", "".join(sweep_plots(sw))),
            (
                "Points",
                table(
                    (
                        "nodes",
                        "agents",
                        "API server cores",
                        "cores/agent above idle",
                        "bytes/agent/s",
                        "LIST p99 s",
                        "verdict",
                        "failed SLOs",
                        "machine load avg",
                    ),
                    rows,
                ),
            ),
            ("Runs", items(p.run_dir for p in sw.points)),
        ],
    )
    path = out / "report.html"
    path.write_text(html_)
    return path


# --- a mitigation check -------------------------------------------------------------------
