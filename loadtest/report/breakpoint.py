"""The break-point search's report: the ladder, what failed first at each step, the forecast
against what was measured, and the forecast's assumptions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtest.report.parts import axes, figure_tag, items, page, table


def _ladder_plot(data: dict[str, Any]) -> str:
    fig, ax = axes("the search: each step's size and verdict", "nodes", "step")
    steps = data["steps"]
    for i, s in enumerate(steps, 1):
        ax.scatter(
            [i],
            [s["nodes"]],
            color="#17692f" if s["verdict"] == "pass" else "#b00020",
            marker="o" if s["verdict"] == "pass" else "x",
            s=60,
        )
        ax.annotate(
            s["first_failed"] or "",
            (i, s["nodes"]),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    pred = (data.get("predicted") or {}).get("nodes")
    if pred:
        ax.axhline(pred, ls="--", color="#555", label=f"forecast {pred:.0f}")
        ax.legend()
    return figure_tag(fig, "green: passed; red x: failed (labelled with its first failing SLO)")


def _curve_plot(data: dict[str, Any]) -> str:
    curve = (data.get("predicted") or {}).get("curve") or []
    if not curve:
        return ""
    fig, ax = axes("utilisation forecast against measured CPU", "API server cores", "nodes")
    ax.plot([r["nodes"] for r in curve], [r["cores"] for r in curve], label="forecast demand")
    cores = data["predicted"]["capacity"]["cores"]
    ax.axhline(cores, color="#b00020", ls=":", label=f"capacity {cores:.2g} cores")
    measured = [(s["nodes"], s.get("cpu_cores")) for s in data["steps"] if s.get("cpu_cores")]
    if measured:
        ax.scatter(*zip(*measured, strict=True), color="k", label="measured")
    ax.set_ylim(0, cores * 2)
    ax.legend()
    return figure_tag(fig, "the model's CPU demand by size (1/(1-rho) latency follows it)")


def write_breakpoint_report(out: Path) -> Path:
    data = json.loads((out / "breakpoint.json").read_text())
    lo, hi = data["bracket"]
    pred = data.get("predicted") or {}
    err = data.get("forecast_error")
    head = [
        f"{data['profile']}, {data['agents_per_node']:g} agent(s) per node: passes at "
        f"{lo} nodes, fails at {hi} ({data['stopped']}; {len(data['steps'])} steps, "
        f"{data['seconds']:.0f} s)",
        f"forecast before the search: {pred.get('line') or pred.get('why') or 'none'}",
    ]
    if err is not None:
        head.append(f"forecast off by {err:+.0%} of the measured break (the bracket's middle)")
    rows = [
        (
            i,
            s["phase"],
            s["nodes"],
            s["agents"],
            s["verdict"],
            s["first_failed"] or "",
            ", ".join(s["failed_slos"]),
            s.get("loadavg_1m"),
            s["seconds"],
            s["run_dir"],
        )
        for i, s in enumerate(data["steps"], 1)
    ]
    breaks = [(b["slo"], b["nodes"], b["why"]) for b in pred.get("breaks") or []]
    sections = [
        ("verdict", items(head)),
        (
            "ladder",
            _ladder_plot(data)
            + table(
                [
                    "#",
                    "phase",
                    "nodes",
                    "agents",
                    "verdict",
                    "first failed",
                    "all failed",
                    "load avg",
                    "s",
                    "run",
                ],
                rows,
            ),
        ),
        (
            "forecast",
            _curve_plot(data)
            + table(["SLO", "breaks at nodes", "why"], breaks)
            + items(pred.get("unit_costs_text") or []),
        ),
        ("assumptions", items(pred.get("assumptions") or [])),
    ]
    target = pred.get("for_target")
    if target:
        sections.append(
            (
                f"forecast for {target['target']}",
                items(
                    [
                        target["line"],
                        *[
                            f"{b['slo']}: {b['nodes']:.0f} nodes ({b['why']})"
                            for b in target["breaks"]
                        ],
                    ]
                )
                + items(target["assumptions"]),
            )
        )
    path = out / "report.html"
    path.write_text(page(f"break point: {data['profile']}", sections))
    return path
