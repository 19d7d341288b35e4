"""A comparison's report (beside comparison.json): paired differences with their
intervals against the budgets, ABBA order named."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from loadtest.errors import ConfigError, LoadtestError
from loadtest.gate import compare
from loadtest.report.parts import axes, col, figure_tag, items, page, read_json, table
from loadtest.run.record import load_record


def interval_errors(
    points: Sequence[float],
    bounds: Sequence[tuple[float | None, float | None]],
    scale: float = 100.0,
) -> list[list[float]]:
    """matplotlib's xerr (distances below and above each point, never negative) for
    intervals in any position: around a negative mean, across zero, or missing (one round)."""
    lo_err, hi_err = [], []
    for p, (lo, hi) in zip(points, bounds, strict=True):
        if lo is None or hi is None or not all(map(math.isfinite, (lo, hi))):
            lo_err.append(0.0)
            hi_err.append(0.0)
            continue
        lo, hi = sorted((scale * lo, scale * hi))
        lo_err.append(max(0.0, p - lo))
        hi_err.append(max(0.0, hi - p))
    return [lo_err, hi_err]


def comparison_plots(c: compare.Comparison) -> list[str]:
    out = []
    names = [n for n, mc in c.metrics.items() if mc.relative is not None]
    if names:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
        rel = [100 * (c.metrics[n].relative or 0.0) for n in names]
        ax.barh(
            names,
            rel,
            xerr=interval_errors(rel, [c.metrics[n].relative_bounds() for n in names]),
            color=["tab:red" if r > 0 else "tab:green" for r in rel],
            alpha=0.7,
            capsize=3,
        )
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(f"{c.candidate} vs {c.baseline}: change (%), 95% CI bars")
        ax.grid(alpha=0.3, axis="x")
        out.append(figure_tag(fig, "Relative change per metric (lower is better)"))
    fig, ax = axes("API server CPU and LIST p99 per run", "cores")
    ax2 = ax.twinx()
    ax2.set_ylabel("LIST p99 (s)")
    for side, style in (("baseline", "-"), ("candidate", "--")):
        for i, d in enumerate(c.runs.get(side, [])):
            try:
                api = load_record(Path(d)).measurements.apiserver
                ts = api.timeseries if api else []
            except LoadtestError:
                continue
            color = "tab:blue" if side == "baseline" else "tab:red"
            ax.plot(
                col(ts, "t"),
                col(ts, "cpu_cores"),
                style,
                color=color,
                alpha=0.7,
                label=f"{side} round {i + 1} CPU",
            )
            ax2.plot(col(ts, "t"), col(ts, "list_p99_s"), ":", marker=".", color=color, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
    out.append(
        figure_tag(
            fig,
            "CPU (lines) and LIST p99 (dotted, right) over each run; blue baseline, red candidate",
        )
    )
    return out


def write_comparison_report(c: compare.Comparison, out: Path) -> Path:
    rows = []
    for n, mc in c.metrics.items():
        lo, hi = mc.relative_bounds()
        rows.append(
            (
                n,
                compare.METRICS[n].unit,
                mc.baseline.mean,
                mc.candidate.mean,
                "n/a" if mc.relative is None else f"{mc.relative:+.1%}",
                "n/a" if lo is None else f"{lo:+.1%} .. {hi:+.1%}",
            )
        )
    load = c.machine.get("loadavg_1m_max")
    machine = (
        f"<p>Machine load (1-min average) up to {load:.2f} during the runs.</p>"
        if load is not None
        else ""
    )
    html_ = page(
        f"Comparison: {c.candidate} vs {c.baseline}: {c.verdict.upper()}",
        [
            (
                "Verdict",
                table(
                    ("budget", "status", "reason"),
                    [(b.budget, b.status, b.reason) for b in c.budgets],
                ),
            ),
            ("Warnings", items(c.warnings, "warn")),
            (
                "Metrics",
                f"<p>{html.escape(c.interval)}; {c.rounds} round(s); order: "
                f"{html.escape(c.schedule)}.</p>"
                + table(("metric", "unit", "baseline", "candidate", "change", "95% CI"), rows),
            ),
            ("Plots", "".join(comparison_plots(c))),
            ("Notes", items(c.notes) + machine),
            ("Runs", items([f"{side}: {d}" for side, ds in c.runs.items() for d in ds])),
        ],
    )
    path = out / "report.html"
    path.write_text(html_)
    return path


def load_comparison(d: Path) -> compare.Comparison:
    """A comparison rebuilt from its runs (comparison.json names them and the budgets)."""
    data = read_json(d / "comparison.json")
    try:
        budgets = compare.parse_budgets([b["budget"] for b in data["budgets"]])
        base, cand = data["runs"]["baseline"], data["runs"]["candidate"]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{d / 'comparison.json'}: not a comparison (no {e})") from None
    return compare.compare_runs(
        [Path(p) for p in base],
        [Path(p) for p in cand],
        budgets,
        data.get("machine"),
        data.get("schedule", ""),
    )


# --- a sweep ------------------------------------------------------------------------------
