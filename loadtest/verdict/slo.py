"""SLOs as data, and their evaluation against a run's summary (pure).

Defaults are the Kubernetes API call latency SLOs (p99 over 5-minute windows: mutating
<= 1 s; reads <= 1 s for one object, <= 5 s namespace scope, <= 30 s cluster scope; WATCH
is not an SLI) and ClusterLoader2's DNS SLOs (errors <= 0.1 %, p50 <= 20 ms, p99 <= 100 ms),
plus budgets for 429s, 5xx, client failures and DNS propagation. The client-timed probes
(DNS, the other tenant, break-glass) are judged over every scheduled request: failures count
against the error budgets and, at their latency or timeout, in the quantiles. A file
overrides any field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from loadtest import config
from loadtest.config import Strict
from loadtest.measurements.apiserver import ApiServerSummary, HarnessAccess, LatencyRow
from loadtest.measurements.bystander import RoleSummary
from loadtest.measurements.client import ClientSummary
from loadtest.measurements.dns import DnsSummary
from loadtest.measurements.openloop import OpenLoopSummary
from loadtest.run.record import RecordLike, coerce

# The API server's verb label (apiserver_request_* metrics) by SLI; the one set every module uses.
READ_VERBS = frozenset({"GET", "LIST"})
MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})


class ApiSLO(Strict):
    mutating_p99_s: float = Field(default=1.0, gt=0)
    read_resource_p99_s: float = Field(default=1.0, gt=0)
    read_namespace_p99_s: float = Field(default=5.0, gt=0)
    read_cluster_p99_s: float = Field(default=30.0, gt=0)
    # The SLI histogram leaves out APF queue wait; "total" includes it.
    metric: Literal["sli", "total"] = "sli"
    throttled_ratio_max: float = Field(default=0.01, ge=0, le=1)
    errors_5xx_ratio_max: float = Field(default=0.001, ge=0, le=1)
    # The other tenant's failed requests besides 429s (5xx, timeouts, transport errors,
    # unsent slots): ClusterLoader2's availability budget.
    others_error_ratio_max: float = Field(default=0.001, ge=0, le=1)


class DnsSLO(Strict):
    error_ratio_max: float = Field(default=0.001, ge=0, le=1)
    p50_ms: float = Field(default=20.0, gt=0)
    p99_ms: float = Field(default=100.0, gt=0)
    # A new Service must resolve within this; twice the DNS cache TTL by default.
    propagation_s_max: float = Field(default=60.0, gt=0)


class ClientSLO(Strict):
    failure_ratio_max: float = Field(default=0.01, ge=0, le=1)
    # Below this share of agents with synced watches the load asked for was not applied.
    synced_ratio_min: float = Field(default=0.9, ge=0, le=1)


class SLOSpec(Strict):
    version: Literal[1] = 1
    api: ApiSLO = ApiSLO()
    dns: DnsSLO = DnsSLO()
    client: ClientSLO = ClientSLO()


def load_slos(path: Path | None) -> SLOSpec:
    return config.load(SLOSpec, path) if path else SLOSpec()


def in_force(summary: RecordLike) -> SLOSpec:
    """The SLOs a run was judged by: as recorded at run time, else its SLO file, else the
    defaults (a run recorded before either)."""
    record = coerce(summary)
    if record.slos:
        return config.parse(SLOSpec, record.slos, "summary.json: slos")
    slo_file = record.config.slo_file if record.config else ""
    return load_slos(Path(slo_file) if slo_file else None)


@dataclass
class SLOResult:
    name: str
    status: Literal["pass", "fail", "error"]
    expected: str
    measured: str
    violations: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        head = f"{self.name}: expected {self.expected}, measured {self.measured}"
        return head + ("; " + "; ".join(self.violations[:10]) if self.violations else "")


def evaluate(summary: RecordLike, spec: SLOSpec) -> list[SLOResult]:
    """One result per SLO; 'error' when the measurement it needs is missing or broken."""
    m = coerce(summary).measurements
    api, dns_m, client = m.apiserver or ApiServerSummary(), m.dns, m.client
    out = [*_api_latency(api, spec.api), *_api_ratios(api, spec.api)]
    if api.harness_access:
        out.append(_api_availability(api.harness_access))
    out += _dns(dns_m, spec.dns) if dns_m is not None else []
    if client is not None:
        out.append(_client(client, spec.client))
        synced = agents_synced(client, spec.client)
        out += [synced] if synced else []
    if m.bystander is not None:
        out += _bystander(m.bystander, spec.api)
    if m.break_glass is not None:
        out.append(_break_glass(m.break_glass, spec.api))
    return out


def agents_synced(c: ClientSummary, s: ClientSLO) -> SLOResult | None:
    """A run whose agents never finished their first LIST did not apply the load it names:
    the harness was short of CPU, or the API server could not serve the initial LISTs."""
    want, got = c.agents.agents_to_sync, c.agents.agents_synced
    if not want:
        return None  # a profile without watches, or a run recorded before the counter
    return SLOResult(
        "agents-synced",
        "pass" if got >= s.synced_ratio_min * want else "fail",
        f">= {s.synced_ratio_min:.0%} of started agents synced their watches",
        f"{got} of {want} ({got / want:.0%})",
    )


def _api_availability(a: HarnessAccess) -> SLOResult:
    """Did every API server answer? The harness scrapes each one as an exempt identity, so
    a failed scrape is a server that is down or unreachable, not one that throttles. Only
    the servers' failures count: `failed` leaves out what the harness itself got wrong
    (a /metrics text it could not parse), which the summary shows as harness_errors."""
    servers = a.by_server
    down = {s: v for s, v in servers.items() if v.failed}
    why = f"; {a.errors[0]}" if a.errors else ""
    return SLOResult(
        "api-availability",
        "pass" if not a.failed else "fail",
        "every API server answers every metrics scrape (exempt identity)",
        f"{a.failed} of {a.scrapes} scrapes failed"
        + (f" ({len(servers)} servers)" if len(servers) > 1 else "")
        + why,
        [
            f"{s}: {v.failed} of {v.scrapes} scrapes failed in {len(v.outages)} outage(s)"
            for s, v in sorted(down.items())
        ],
    )


def _break_glass(b: RoleSummary, s: ApiSLO) -> SLOResult:
    """The operator's rollback path (exempt from APF): every write succeeds, p99 as any
    mutating call's SLO, over every scheduled write (failures at their latency or timeout)."""
    expected = (
        f"no failure, p99 <= {s.mutating_p99_s:g}s over every scheduled write (admin "
        "PATCH, as the client sees it)"
    )
    if b.error is not None:
        return _broken("break-glass", expected, b.error)
    p99 = b.p99_ms
    ok = b.failed == 0 and p99 is not None and p99 / 1000 <= s.mutating_p99_s
    return SLOResult(
        "break-glass",
        "pass" if ok else "fail",
        expected,
        f"p99 {'-' if p99 is None else f'{p99 / 1000:.3g}s'}, {b.failed} "
        f"failed of {b.scheduled}{_causes(b)}",
    )


def _bystander(b: RoleSummary, s: ApiSLO) -> list[SLOResult]:
    """Another tenant's namespace LISTs, timed at the client from their scheduled times: APF
    queueing included, failed requests too."""
    lat = (
        f"p99 <= {s.read_namespace_p99_s:g}s over every scheduled request (namespace "
        "LIST, as the client sees it)"
    )
    thr = f"429 <= {s.throttled_ratio_max:.2%}"
    err = f"failures other than 429 <= {s.others_error_ratio_max:.2%} of scheduled requests"
    if b.error is not None:
        return [
            _broken(n, e, b.error)
            for n, e in (
                ("others-latency", lat),
                ("others-throttling", thr),
                ("others-errors", err),
            )
        ]
    p99, n = b.p99_ms, b.scheduled
    ratio = b.throttled_429 / n if n else 0.0
    other = b.failed - b.throttled_429
    return [
        SLOResult(
            "others-latency",
            "fail" if p99 is None or p99 / 1000 > s.read_namespace_p99_s else "pass",
            lat,
            "nothing scheduled"
            if p99 is None
            else f"{p99 / 1000:.3g}s over {n} requests by {b.user} ({b.failed} failed)",
        ),
        SLOResult(
            "others-throttling",
            "fail" if ratio > s.throttled_ratio_max else "pass",
            thr,
            f"{ratio:.2%} ({b.throttled_429} of {n})",
        ),
        SLOResult(
            "others-errors",
            "fail" if n and other / n > s.others_error_ratio_max else "pass",
            err,
            f"{other / n if n else 0:.2%} ({other} of {n}){_causes(b)}",
        ),
    ]


def _causes(b: OpenLoopSummary) -> str:
    c = b.failed_by_cause
    return "; " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) if c else ""


def _broken(name: str, expected: str, why: str) -> SLOResult:
    return SLOResult(name, "error", expected, f"nothing ({why})")


def _api_latency(api: ApiServerSummary, s: ApiSLO) -> list[SLOResult]:
    metric = (
        "apiserver_request_sli_duration_seconds"
        if s.metric == "sli"
        else "apiserver_request_duration_seconds"
    )
    classes = [
        ("api-latency-mutating", s.mutating_p99_s, lambda v, sc: v in MUTATING_VERBS),
        (
            "api-latency-read-resource",
            s.read_resource_p99_s,
            lambda v, sc: v in READ_VERBS and sc == "resource",
        ),
        (
            "api-latency-read-namespace",
            s.read_namespace_p99_s,
            lambda v, sc: v in READ_VERBS and sc == "namespace",
        ),
        (
            "api-latency-read-cluster",
            s.read_cluster_p99_s,
            lambda v, sc: v in READ_VERBS and sc == "cluster",
        ),
    ]
    out = []
    for name, limit, match in classes:
        expected = f"p99 <= {limit:g}s in every 5-minute window ({metric})"
        if api.latency is None:
            out.append(_broken(name, expected, api.error or "no API server metrics"))
            continue
        rows = [r for r in api.latency if r.metric == metric and match(r.verb, r.scope)]
        if not rows:
            out.append(SLOResult(name, "pass", expected, "no such requests in the run"))
            continue
        worst = max(rows, key=lambda r: r.p99_judged)
        bad = [r for r in rows if r.p99_judged > limit]
        out.append(
            SLOResult(
                name,
                "fail" if bad else "pass",
                expected,
                f"worst p99 {_s(worst)} for {worst.verb} {worst.resource} scope={worst.scope}",
                [
                    f"{r.verb} {r.resource or '-'} scope={r.scope}: p99 {_s(r)} over "
                    f"{r.count:.0f} requests"
                    for r in sorted(bad, key=lambda r: -r.p99_judged)
                ],
            )
        )
    return out


def _s(row: LatencyRow) -> str:
    return f"{row.p99_judged:.3g}s"


def _api_ratios(api: ApiServerSummary, s: ApiSLO) -> list[SLOResult]:
    req = api.requests
    if req is None:
        why = api.error or "no API server metrics"
        return [
            _broken("api-throttling", f"429s <= {s.throttled_ratio_max:.2%}", why),
            _broken("api-errors", f"5xx <= {s.errors_5xx_ratio_max:.2%}", why),
        ]
    total = max(req.total, 1.0)
    out = []
    for name, count, limit, what in (
        ("api-throttling", req.throttled_429, s.throttled_ratio_max, "429"),
        ("api-errors", req.errors_5xx, s.errors_5xx_ratio_max, "5xx"),
    ):
        ratio = count / total
        out.append(
            SLOResult(
                name,
                "fail" if ratio > limit else "pass",
                f"{what} <= {limit:.2%} of requests",
                f"{ratio:.2%} ({count:.0f} of {req.total:.0f})",
            )
        )
    return out


def _dns(d: DnsSummary, s: DnsSLO) -> list[SLOResult]:
    if d.error is not None:
        return [
            _broken(n, e, d.error)
            for n, e in (
                ("dns-errors", f"<= {s.error_ratio_max:.2%}"),
                ("dns-latency-p50", f"<= {s.p50_ms}ms"),
                ("dns-latency-p99", f"<= {s.p99_ms}ms"),
                ("dns-propagation", f"<= {s.propagation_s_max}s"),
            )
        ]
    out = [
        SLOResult(
            "dns-errors",
            "fail" if d.error_rate > s.error_ratio_max else "pass",
            f"errors <= {s.error_ratio_max:.2%} of scheduled lookups",
            f"{d.error_rate:.2%} ({d.failed} of {d.scheduled}{_causes(d)})",
            [f"{n}: {v.failed} of {v.scheduled}" for n, v in d.by_name.items() if v.failed],
        )
    ]
    for q, v, limit in (("p50", d.p50_ms, s.p50_ms), ("p99", d.p99_ms, s.p99_ms)):
        out.append(
            SLOResult(
                f"dns-latency-{q}",
                "fail" if v is None or v > limit else "pass",
                f"{q} <= {limit:g}ms over every scheduled lookup (a timeout at its timeout)",
                "nothing scheduled" if v is None else f"{v:.1f}ms",
            )
        )
    props = d.propagation
    if d.propagation_error:  # the probe Service could not be made: nothing timed
        out.append(
            _broken(
                "dns-propagation",
                f"a new Service resolves within {s.propagation_s_max:g}s",
                d.propagation_error,
            )
        )
    elif props:
        slow = [p for p in props if p.seconds is None or p.seconds > s.propagation_s_max]
        worst = max((p.seconds for p in props if p.seconds is not None), default=None)
        out.append(
            SLOResult(
                "dns-propagation",
                "fail" if slow else "pass",
                f"a new Service resolves within {s.propagation_s_max:g}s",
                f"slowest {worst:.1f}s" if worst is not None else "never resolved",
                [
                    f"{p.name}: " + ("never resolved" if p.seconds is None else f"{p.seconds:.1f}s")
                    for p in slow
                ],
            )
        )
    return out


def _client(c: ClientSummary, s: ClientSLO) -> SLOResult:
    total, failures = c.requests, c.failures
    ratio = failures / total if total else 0.0
    return SLOResult(
        "client-failures",
        "fail" if ratio > s.failure_ratio_max else "pass",
        f"agent request failures <= {s.failure_ratio_max:.2%}",
        f"{ratio:.2%} ({failures} of {total})",
        [f"{r.name}: {r.failures} of {r.requests}" for r in c.by_name if r.failures],
    )
