"""A run's report (report.html + report.json beside summary.json): what failed and why,
which requests, which identity, with the run's plots."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.gate import compare
from loadtest.measurements import client as client_m
from loadtest.measurements.apiserver import ApiServerSummary
from loadtest.measurements.client import ClientSummary
from loadtest.report.parts import axes, col, figure_tag, items, page, table
from loadtest.run.record import RecordLike, RunRecord, coerce, load_record, run_profile
from loadtest.verdict import slo


def run_plots(run_dir: Path, s: RecordLike) -> list[str]:
    """Latency against agents, throttling, API server CPU, DNS: one figure each."""
    s = coerce(s)
    m = s.measurements
    ts = m.apiserver.timeseries if m.apiserver else []
    origin = compare.scrape_origin(run_dir, s) or 0.0
    users = client_m.timeseries(run_dir / "agents")
    out = []
    if ts or users:
        fig, ax = axes("Latency over time against agent count", "p99 (s)")
        t = col(ts, "t")
        ax.plot(t, col(ts, "list_p99_s"), "o-", label="API server LIST p99 (per interval)")
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
        fig, ax = axes("429s, APF rejections and 5xx", "responses per second")
        for key, label in (
            ("throttled_rps", "429 Too Many Requests"),
            ("apf_rejected_rps", "APF rejected"),
            ("errors_5xx_rps", "5xx"),
        ):
            ax.plot(col(ts, "t"), col(ts, key), "o-", label=label)
        ax.legend(fontsize=8)
        out.append(figure_tag(fig, "Throttling and errors at the API server, per scrape interval"))
        fig, ax = axes("API server CPU", "cores")
        ax.plot(col(ts, "t"), col(ts, "cpu_cores"), "o-", label="kube-apiserver")
        cpus = s.environment.get("cpus")
        if cpus:
            ax.axhline(cpus, color="r", ls=":", label=f"machine cores ({cpus})")
        ax.legend(fontsize=8)
        out.append(figure_tag(fig, "API server CPU (process_cpu_seconds_total rate)"))
    dts = m.dns.timeseries if m.dns else []
    if dts:
        fig, ax = axes("Cluster DNS", "p99 (ms)", "seconds since the probe started")
        ax.plot(col(dts, "t"), col(dts, "p99_ms"), "o-", label="probe p99")
        limit = slo.in_force(s).dns.p99_ms
        ax.axhline(limit, color="r", ls=":", label=f"SLO p99 {limit:g} ms")
        ax2 = ax.twinx()
        failed = [d.get("failed", d.get("errors")) or 0 for d in dts]  # "errors": before open loop
        ax2.bar(col(dts, "t"), failed, width=2, color="tab:red", alpha=0.4)
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
    api = m.apiserver or ApiServerSummary()
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
            for r in api.latency or []
            if r.metric == "apiserver_request_duration_seconds"
            and r.verb != "WATCH"
            and r.p99 is not None
        ),
        key=lambda r: -(r.p99 or 0),
    )
    out += [
        f"slowest at the API server: {r.verb} {r.resource or '-'} scope={r.scope}"
        f" p99 {r.p99:.3g}s over {r.count:.0f} requests"
        for r in slow[:2]
    ]
    for r in api.response_bytes[:2]:
        out.append(
            f"the API server sent {r['bytes'] / 1e6:.1f} MB for {r['verb']} "
            f"{r['resource'] or '-'} scope={r['scope']} ({r['responses']:.0f} responses"
            + (f", {r['mean_bytes'] / 1e6:.2f} MB each)" if r["mean_bytes"] else ")")
        )
    agents = (m.client or ClientSummary()).agents
    sent, counts = agents.bytes, agents.requests
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
    apf = api.apf
    for r in apf.dispatched[:3]:
        out.append(
            f"APF dispatched {r['count']:.0f} requests of flow schema "
            f"{r['flow_schema']} (priority level {r['priority_level']})"
        )
    for pl, seats in sorted(apf.executing_seats_max.items(), key=lambda x: -x[1]):
        if pl != "exempt":
            out.append(
                f"APF priority level {pl}: up to {seats:.0f} seats executing, "
                f"{apf.inqueue_max.get(pl, 0):.0f} queued"
            )
    for r in apf.rejected[:3]:
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
            (r.name, r.requests, r.failures, r.p50_ms, r.p99_ms, r.avg_bytes)
            for r in (s.measurements.client or ClientSummary()).by_name
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
