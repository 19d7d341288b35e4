"""HTML reports (one self-contained file each: plots inlined as base64 PNG) with JSON beside.

Three kinds: a run (report.html + report.json next to summary.json), a comparison (next to
comparison.json) and a sweep (next to sweep.json). Every report says what failed and why:
which requests, which identity, and how cost grew with node count when a sweep is there.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from loadtest import compare, slo  # noqa: E402
from loadtest.errors import ConfigError, LoadtestError  # noqa: E402
from loadtest.measurements import client as client_m  # noqa: E402
from loadtest.measurements.bystander import ROLES  # noqa: E402
from loadtest.measurements.bystander import read_slots as role_slots  # noqa: E402
from loadtest.results import read_jsonl, read_summary  # noqa: E402
from loadtest.run_record import RecordLike, RunRecord, coerce, load_record, run_profile  # noqa: E402
from loadtest.scaling import Sweep  # noqa: E402

CSS = """body{font:14px system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-variant-numeric:tabular-nums}.pass{color:#17692f;font-weight:600}
.fail,.error{color:#b00020;font-weight:600}.warn{background:#fff4d6;padding:4px 8px}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:12px}"""


# --- building blocks ----------------------------------------------------------------------


def draw(make: Callable[[], Path], log: Callable[[str], None]) -> Path | None:
    """Draw a report once the answer is out: a report that cannot be drawn is a one-line
    warning, never a traceback in place of the verdict."""
    try:
        path = make()
    except Exception as e:  # noqa: BLE001 - whatever plotting raised, the verdict stands
        log(f"warning: report not drawn: {failure(e)}")
        return None
    log(f"report: {path}")
    return path


def failure(e: BaseException) -> str:
    """An exception as one short line."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def figure_tag(fig: Figure, caption: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(c: object) -> str:
    if isinstance(c, float):
        return f"{c:.4g}"
    if c in ("pass", "fail", "error"):
        return f'<span class="{c}">{str(c).upper()}</span>'
    return html.escape("" if c is None else str(c))


def items(lines: Iterable[str], cls: str = "") -> str:
    lis = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    return f'<ul class="{cls}">{lis}</ul>' if lis else ""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{b}" for h, b in sections if b)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        "</body></html>"
    )


def _axes(
    title: str, ylabel: str, xlabel: str = "seconds since the first scrape"
) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _col(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]


# --- one run ------------------------------------------------------------------------------


def run_plots(run_dir: Path, s: RecordLike) -> list[str]:
    """Latency against agents, throttling, API server CPU, DNS: one figure each."""
    s = coerce(s)
    m = s.measurements
    ts = (m.apiserver or {}).get("timeseries", [])
    origin = compare.scrape_origin(run_dir, s) or 0.0
    users = client_m.timeseries(run_dir / "agents")
    out = []
    if ts or users:
        fig, ax = _axes("Latency over time against agent count", "p99 (s)")
        t = _col(ts, "t")
        ax.plot(t, _col(ts, "list_p99_s"), "o-", label="API server LIST p99 (per interval)")
        if users:
            ut = [u["timestamp"] - origin for u in users]
            ax.plot(
                ut,
                [(u["p99_ms"] or float("nan")) / 1000 for u in users],
                ".-",
                alpha=0.6,
                label="agents' p99, all requests (Locust, rolling)",
            )
            ax2 = ax.twinx()
            ax2.step(ut, [u["users"] for u in users], "k--", where="post", alpha=0.5)
            ax2.set_ylabel("agents running")
        ax.legend(loc="upper left", fontsize=8)
        out.append(
            figure_tag(fig, "LIST p99 and agent p99 (left) with running agents (dashed, right)")
        )
    if ts:
        fig, ax = _axes("429s, APF rejections and 5xx", "responses per second")
        for key, label in (
            ("throttled_rps", "429 Too Many Requests"),
            ("apf_rejected_rps", "APF rejected"),
            ("errors_5xx_rps", "5xx"),
        ):
            ax.plot(_col(ts, "t"), _col(ts, key), "o-", label=label)
        ax.legend(fontsize=8)
        out.append(figure_tag(fig, "Throttling and errors at the API server, per scrape interval"))
        fig, ax = _axes("API server CPU", "cores")
        ax.plot(_col(ts, "t"), _col(ts, "cpu_cores"), "o-", label="kube-apiserver")
        cpus = s.environment.get("cpus")
        if cpus:
            ax.axhline(cpus, color="r", ls=":", label=f"machine cores ({cpus})")
        ax.legend(fontsize=8)
        out.append(figure_tag(fig, "API server CPU (process_cpu_seconds_total rate)"))
    dts = (m.dns or {}).get("timeseries", [])
    if dts:
        fig, ax = _axes("Cluster DNS", "p99 (ms)", "seconds since the probe started")
        ax.plot(_col(dts, "t"), _col(dts, "p99_ms"), "o-", label="probe p99")
        limit = slo.in_force(s).dns.p99_ms
        ax.axhline(limit, color="r", ls=":", label=f"SLO p99 {limit:g} ms")
        ax2 = ax.twinx()
        failed = [d.get("failed", d.get("errors")) for d in dts]  # "errors": before open loop
        ax2.bar(_col(dts, "t"), failed, width=2, color="tab:red", alpha=0.4)
        ax2.set_ylabel("failed probes")
        ax2.set_ylim(0, max([1.0, *failed]) * 1.1)
        ax.legend(fontsize=8, loc="upper left")
        out.append(figure_tag(fig, "DNS probe latency (line) and failures (bars)"))
    return out


def _profile_identity(record: RunRecord) -> str:
    """Who the agents were, by the profile the run recorded (today's only for a record
    without one, and then it says so)."""
    p, note = run_profile(record)
    if p is None:
        return f"{note} (identity unknown)"
    return f"profile {p.name}: user agent {p.user_agent!r}, identity {p.identity}" + (
        f" ({note})" if note else ""
    )


def cause_lines(s: RecordLike) -> list[str]:
    """What failed and what drove it: SLOs, the requests that cost most, who sent them."""
    record = coerce(s)
    m = record.measurements
    api = m.apiserver or {}
    out = [
        f"SLO {r.name}: measured {r.measured} (expected {r.expected})"
        + (f"; {'; '.join(r.violations[:3])}" if r.violations else "")
        for r in record.slo
        if r.status != "pass"
    ]
    cluster = record.cluster
    budget = (cluster.get("apiserver_memory_bytes") or 0) / 2**30
    if cluster.get("apiserver_oom_kills"):
        out.append(
            f"the kernel's OOM killer took the API server "
            f"{cluster['apiserver_oom_kills']} time(s) (memory budget "
            f"{budget:.3g} GiB): after that the control plane is down"
        )
    elif peak := cluster.get("apiserver_memory_peak_bytes"):
        out.append(
            f"API server memory peaked at {peak / 2**30:.3g} GiB of its {budget:.3g} GiB budget"
        )
    slow = sorted(
        (
            r
            for r in api.get("latency", [])
            if r["metric"] == "apiserver_request_duration_seconds"
            and r["verb"] != "WATCH"
            and r["p99"] is not None
        ),
        key=lambda r: -r["p99"],
    )
    out += [
        f"slowest at the API server: {r['verb']} {r['resource'] or '-'} scope={r['scope']}"
        f" p99 {r['p99']:.3g}s over {r['count']:.0f} requests"
        for r in slow[:2]
    ]
    for r in api.get("response_bytes", [])[:2]:
        out.append(
            f"the API server sent {r['bytes'] / 1e6:.1f} MB for {r['verb']} "
            f"{r['resource'] or '-'} scope={r['scope']} ({r['responses']:.0f} responses"
            + (f", {r['mean_bytes'] / 1e6:.2f} MB each)" if r["mean_bytes"] else ")")
        )
    client = m.client or {}
    sent = client.get("agents", {}).get("bytes") or {}
    counts = client.get("agents", {}).get("requests") or {}
    total = sum(sent.values())
    for name, b in sorted(sent.items(), key=lambda kv: -kv[1])[:3]:
        if total and b:
            n = counts.get(name, 0)
            out.append(
                f"requests {name}: {b / total:.0%} of the bytes agents received "
                f"({b / 1e6:.1f} MB in {n} requests"
                + (f", {b / n / 1e6:.2f} MB each)" if n else ")")
            )
    if record.config:
        out.append(f"sent by {record.config.agents} agents with " + _profile_identity(record))
    apf = api.get("apf", {})
    for r in apf.get("dispatched", [])[:3]:
        out.append(
            f"APF dispatched {r['count']:.0f} requests of flow schema "
            f"{r['flow_schema']} (priority level {r['priority_level']})"
        )
    for pl, seats in sorted((apf.get("executing_seats_max") or {}).items(), key=lambda x: -x[1]):
        if pl != "exempt":
            out.append(
                f"APF priority level {pl}: up to {seats:.0f} seats executing, "
                f"{(apf.get('inqueue_max') or {}).get(pl, 0):.0f} queued"
            )
    for r in apf.get("rejected", [])[:3]:
        out.append(
            f"APF rejected {r['count']:.0f} of flow schema {r['flow_schema']} "
            f"({r['priority_level']}, {r['reason']})"
        )
    return out


def write_run_report(run_dir: Path) -> Path:
    s = load_record(run_dir)
    costs, notes = compare.run_costs(run_dir)
    cause = cause_lines(s)
    cfg = s.config
    title = (
        f"loadtest run {run_dir.name}: {cfg.profile if cfg else None} x "
        f"{cfg.agents if cfg else None} agents, "
        f"{cfg.inventory.nodes if cfg else None} nodes: {(s.verdict or '?').upper()}"
    )
    slos = table(
        ("SLO", "status", "expected", "measured"),
        [(r.name, r.status, r.expected, r.measured) for r in s.slo],
    )
    by_name = table(
        ("request", "count", "failures", "p50 ms", "p99 ms", "avg bytes"),
        [
            (r["name"], r["requests"], r["failures"], r["p50_ms"], r["p99_ms"], r["avg_bytes"])
            for r in (s.measurements.client or {}).get("by_name", [])
        ],
    )
    cost_table = table(
        ("metric", "value", "unit", "what"),
        [(k, v, compare.METRICS[k].unit, compare.METRICS[k].what) for k, v in costs.items()],
    )
    env = s.environment
    html_ = page(
        title,
        [
            ("Cause", items(cause) or "<p>No SLO failed.</p>"),
            ("SLOs", slos),
            ("Plots", "".join(run_plots(run_dir, s))),
            ("Cost", cost_table + items(notes)),
            ("Requests by name (agents' view)", by_name),
            (
                "Environment",
                table(
                    ("field", "value"),
                    [(k, json.dumps(v) if isinstance(v, dict) else v) for k, v in env.items()],
                ),
            ),
        ],
    )
    (run_dir / "report.json").write_text(
        json.dumps(
            {"title": title, "verdict": s.verdict, "cause": cause, "costs": costs, "notes": notes},
            indent=2,
        )
    )
    path = run_dir / "report.html"
    path.write_text(html_)
    return path


# --- a comparison -------------------------------------------------------------------------


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
    fig, ax = _axes("API server CPU and LIST p99 per run", "cores")
    ax2 = ax.twinx()
    ax2.set_ylabel("LIST p99 (s)")
    for side, style in (("baseline", "-"), ("candidate", "--")):
        for i, d in enumerate(c.runs.get(side, [])):
            try:
                ts = (
                    read_summary(Path(d))
                    .get("measurements", {})
                    .get("apiserver", {})
                    .get("timeseries", [])
                )
            except LoadtestError:
                continue
            color = "tab:blue" if side == "baseline" else "tab:red"
            ax.plot(
                _col(ts, "t"),
                _col(ts, "cpu_cores"),
                style,
                color=color,
                alpha=0.7,
                label=f"{side} round {i + 1} CPU",
            )
            ax2.plot(_col(ts, "t"), _col(ts, "list_p99_s"), ":", marker=".", color=color, alpha=0.5)
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


def _read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object")
    return data


def load_comparison(d: Path) -> compare.Comparison:
    """A comparison rebuilt from its runs (comparison.json names them and the budgets)."""
    data = _read_json(d / "comparison.json")
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

VARIANTS = (("without", "tab:red"), ("with", "tab:green"))  # and their colours in plots
# (key in others_view, label, unit) for the side-by-side table and bars
MITIGATION_ROWS = (
    ("others_p99_s", "other tenant's LIST p99", "s"),
    ("others_429", "other tenant's 429s", ""),
    ("others_apf_wait_p99_s", "others' APF queue wait p99", "s"),
    ("mutating_p99_s", "mutating p99 at the API server", "s"),
    ("break_glass_p99_s", "break-glass PATCH p99", "s"),
    ("break_glass_failed", "break-glass PATCHes failed", ""),
    ("dns_error_rate", "DNS probe error ratio", ""),
    ("agents_throttled_429", "agents' 429s (expected to rise)", ""),
    ("agents_apf_rejected", "agents' APF rejections", ""),
)


def _role_series(run_dir: Path, role: str) -> tuple[list[float], list[float], list[bool]]:
    """(seconds since the role's first slot, ms as its quantiles count it, failed) for every
    scheduled slot of its raw stream."""
    s = role_slots(read_jsonl(run_dir / "raw" / f"{role}.jsonl"))
    t0 = s.slots[0]["sched"] if s.slots else 0.0
    return (
        [r["sched"] - t0 for r in s.slots],
        [s.value_ms(r) for r in s.slots],
        [r["cause"] is not None for r in s.slots],
    )


def mitigation_plots(data: dict[str, Any]) -> list[str]:
    out = []
    runs = data.get("runs", {})
    last = {v: (runs.get(v) or [{}])[-1] for v, _ in VARIANTS}
    seconds = [(k, label) for k, label, unit in MITIGATION_ROWS if unit == "s"]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = range(len(seconds))
    for i, (variant, color) in enumerate(VARIANTS):
        ax.bar(
            [j + 0.4 * i for j in x],
            [last[variant].get(k) or 0.0 for k, _ in seconds],
            0.4,
            color=color,
            alpha=0.75,
            label=f"{variant} mitigation",
        )
    ax.set_xticks([j + 0.2 for j in x], [label for _, label in seconds], fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("Everyone else and the break-glass path, without vs with the APF objects")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    out.append(figure_tag(fig, "p99s of the last round (lower is better)"))
    dirs = data.get("run_dirs", {})
    for role in ROLES.values():  # the client-timed roles every run records
        title = role.what[0].upper() + role.what[1:]
        fig, ax = _axes(title, "latency (ms)", "seconds since the role's first request")
        drew = False
        for variant, color in VARIANTS:
            for d in dirs.get(variant, [])[-1:]:
                t, ms, failed = _role_series(Path(d), role.name)
                if not t:
                    continue
                drew = True
                ax.plot(t, ms, ".", ms=3, color=color, alpha=0.6, label=f"{variant} mitigation")
                bad = [(a, b) for a, b, f in zip(t, ms, failed, strict=True) if f]
                if bad:
                    ax.plot(
                        *zip(*bad, strict=True),
                        "x",
                        color="k",
                        label=f"{variant}: failed (429, timeout, unsent...)",
                    )
        if drew:
            ax.set_yscale("log")
            ax.legend(fontsize=8)
            out.append(
                figure_tag(
                    fig,
                    f"{title}: every scheduled request of the last round, "
                    "timed at the client from its scheduled time",
                )
            )
        else:
            plt.close(fig)
    return out


def write_mitigation_report(d: Path) -> Path:
    """Side by side: the scenario without and with the APF objects (mitigation/)."""
    data = _read_json(d / "comparison.json")
    runs = data.get("runs", {})
    rows = []
    for k, label, unit in MITIGATION_ROWS:
        rows.append(
            (
                label + (f" ({unit})" if unit else ""),
                *(
                    ", ".join(_fmt(v.get(k)) for v in runs.get(variant, []))
                    for variant, _ in VARIANTS
                ),
            )
        )
    slos = [
        (variant, ", ".join(v.get("others_slos_failed") or []) or "none")
        for variant, _ in VARIANTS
        for v in runs.get(variant, [])
    ]
    apf = d / "apf.yaml"
    html_ = page(
        f"Mitigation check: {data.get('verdict', '?')}",
        [
            (
                "Verdict",
                items(data.get("reasons", []))
                + (
                    table(
                        ("round", "verdict"),
                        [(r.get("round"), r.get("verdict")) for r in data["rounds"]],
                    )
                    if data.get("rounds")
                    else ""
                ),
            ),
            ("Side by side (one value per round)", table(("", "without", "with"), rows)),
            ("SLOs missed by anyone but the agents", table(("variant", "failed"), slos)),
            ("Plots", "".join(mitigation_plots(data))),
            ("Objects", f"<pre>{html.escape(apf.read_text())}</pre>" if apf.exists() else ""),
            (
                "Runs",
                items(
                    f"{variant}: {p}"
                    for variant, ps in data.get("run_dirs", {}).items()
                    for p in ps
                ),
            ),
        ],
    )
    path = d / "report.html"
    path.write_text(html_)
    return path


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)
