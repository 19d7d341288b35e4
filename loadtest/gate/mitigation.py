"""API Priority and Fairness objects that confine an agent, derived from a run's results.

The agents get a PriorityLevelConfiguration of their own with a bounded share of the API
server's concurrency and fair queuing, and a FlowSchema that matches every identity the
harness gives agents (the agents' ServiceAccount group covers the shared token, per-agent
tokens and impersonated per-agent users) with `distinguisherMethod: ByUser`, so one agent
cannot starve the others. Objects are plain dicts, written as reviewable YAML.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest.agents.identity import GROUP, NAMESPACE
from loadtest.clusters.base import (
    Cluster,
    ClusterProvider,
    apply_object,
    http_client,
    response_message,
)
from loadtest.errors import ClusterError, ConfigError, LoadtestError
from loadtest.gate.compare import abba, schedule_text
from loadtest.measurements.apiserver import ApiServerSummary
from loadtest.measurements.bystander import RoleSummary
from loadtest.measurements.client import ClientSummary
from loadtest.measurements.openloop import OpenLoopSummary
from loadtest.run.job import MainJob, RunConfig
from loadtest.run.record import RecordLike, coerce, load_record
from loadtest.verdict.slo import MUTATING_VERBS

FC = "/apis/flowcontrol.apiserver.k8s.io/v1"
NAME = "loadtest-agents"
# Sum of nominalConcurrencyShares of Kubernetes 1.33's suggested priority levels
# (exempt 0 + system 30 + leader-election 10 + node-high 40 + workload-high 40 +
#  workload-low 100 + global-default 20 + catch-all 5).
DEFAULT_SHARES_SUM = 245
# the two runs of a rerun round, in compare's A/B order: without the objects, then with
VARIANTS = ("without", "with")


@dataclass(frozen=True)
class Plan:
    """What the mitigation aims at; `shares_of_server` is the agents' nominal share."""

    shares_of_server: float = 0.10
    queues: int = 64
    hand_size: int = 6
    queue_length_limit: int = 50
    matching_precedence: int = 800  # after system/node/leader flows, before workload-low

    def __post_init__(self) -> None:
        if not 0 < self.shares_of_server < 1:
            raise ConfigError("mitigation share must be between 0 and 1 (e.g. 0.1)")


def shares_for(fraction: float, others_sum: int = DEFAULT_SHARES_SUM) -> int:
    """nominalConcurrencyShares that give the new level `fraction` of the server's seats:
    NCS / (others + NCS) = fraction."""
    return max(1, math.ceil(fraction * others_sum / (1 - fraction)))


def objects(plan: Plan, others_sum: int = DEFAULT_SHARES_SUM) -> list[dict[str, Any]]:
    pl = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/managed-by": "loadtest"}},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": shares_for(plan.shares_of_server, others_sum),
                # Seats lent away in quiet times are not what protects the others; borrowing
                # none keeps the agents inside their share when the server is busy.
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {
                    "type": "Queue",
                    "queuing": {
                        "queues": plan.queues,
                        "handSize": plan.hand_size,
                        "queueLengthLimit": plan.queue_length_limit,
                    },
                },
            },
        },
    }
    fs = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/managed-by": "loadtest"}},
        "spec": {
            "priorityLevelConfiguration": {"name": NAME},
            "matchingPrecedence": plan.matching_precedence,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {"kind": "Group", "group": {"name": GROUP}},
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"namespace": NAMESPACE, "name": "*"},
                        },
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["get", "list", "watch"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "clusterScope": True,
                            "namespaces": ["*"],
                        }
                    ],
                }
            ],
        },
    }
    return [pl, fs]


# kube-apiserver's defaults: --max-requests-inflight 400 + --max-mutating-requests-inflight 200
DEFAULT_SERVER_SEATS = 600


def derive_plan(summary: RecordLike) -> tuple[Plan, str]:
    """The agents' share from a run: a seat executing a LIST burns up to one core (encoding
    is CPU-bound), so the agents get as many seats as half the API server's cores, of the
    server's total seats (read from its nominal limits when scraped)."""
    record = coerce(summary)
    api = record.measurements.apiserver or ApiServerSummary()
    limits = api.apf.nominal_limit_seats
    total = sum(limits.values()) or DEFAULT_SERVER_SEATS
    cores = record.environment.get("cpus") or 2
    seats = max(1, int(cores // 2))
    plan = Plan(shares_of_server=min(0.5, seats / total))
    return plan, (
        f"{seats} seat(s) for the agents = half of {cores} cores, of {total:.0f} "
        f"server seats{'' if limits else ' (kube-apiserver default)'}"
    )


def from_results(summary: RecordLike, plan: Plan | None = None) -> tuple[list[dict], str]:
    """Objects for a failing run, and why: the agents' share is derived from the run unless
    a plan is given."""
    record = coerce(summary)
    basis = "share given"
    if plan is None:
        plan, basis = derive_plan(record)
    seats = (record.measurements.apiserver or ApiServerSummary()).apf.executing_seats_max
    why = (
        f"profile {record.config.profile if record.config else '?'}: verdict "
        f"{record.verdict or '?'}; executing seats max by priority level {seats}; "
        f"agents confined to {plan.shares_of_server:.2%} of the server's concurrency "
        f"({basis}), fair-queued by user"
    )
    return objects(plan), why


def write_yaml(objs: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def _collection(obj: dict[str, Any]) -> str:
    kind = obj["kind"]
    return f"{FC}/{'prioritylevelconfigurations' if kind.startswith('Priority') else 'flowschemas'}"


def apply(cluster: Cluster, objs: list[dict[str, Any]], dry_run: bool = False) -> list[str]:
    """Server-side apply the objects (the API server validates them; dry_run=True only
    validates). Only for clusters the harness created."""
    if not cluster.created_by_harness and not dry_run:
        raise ClusterError(
            f"refusing to apply APF objects to {cluster.name!r}: not created "
            "by loadtest (review and apply the YAML yourself)"
        )
    with http_client(cluster) as c:
        for obj in objs:
            apply_object(c, _collection(obj), obj, dry_run=dry_run)
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in objs]


def remove(cluster: Cluster) -> None:
    """Delete both objects; gone already is fine, a refusal is a one-line error."""
    with http_client(cluster) as c:
        for coll in (f"{FC}/flowschemas", f"{FC}/prioritylevelconfigurations"):
            r = c.delete(f"{coll}/{NAME}")
            if r.status_code not in (200, 202, 404):
                raise ClusterError(
                    f"delete {coll.rsplit('/', 1)[-1]}/{NAME}: HTTP "
                    f"{r.status_code}: {response_message(r)}"
                )


# What the agents suffer themselves; a mitigation is expected to make these worse.
AGENTS_OWN_SLOS = ("client-failures", "agents-synced", "api-throttling", "api-latency-read-cluster")


def others_view(summary: RecordLike) -> dict[str, Any]:
    """What the mitigation is for: how everyone but the agents fared in a run (pure)."""
    record = coerce(summary)
    m = record.measurements
    api, dns = m.apiserver or ApiServerSummary(), m.dns
    apf = api.apf
    others_rejected = sum(r["count"] for r in apf.rejected if r["priority_level"] != NAME)
    others_wait = [w for w in apf.wait if w["priority_level"] not in (NAME, "exempt")]
    slo = {r.name: r.status for r in record.slo}
    agents = (m.client or ClientSummary()).agents
    bystander, glass = m.bystander, m.break_glass
    return {
        "others_p99_s": _p99_s(bystander),
        # the share of the other tenant's scheduled reads that succeeded: when both runs'
        # p99 sits at the timeout, this is where a mitigation still shows
        "others_ok_share": (
            bystander.ok / bystander.scheduled if bystander and bystander.scheduled else None
        ),
        "others_429": _set(bystander, "throttled_429"),
        # agents only read: mutating latency and DNS are the others' experience
        "others_slos_failed": sorted(
            n for n, s in slo.items() if s != "pass" and n not in AGENTS_OWN_SLOS
        ),
        "mutating_p99_s": max(
            (
                r.p99_worst_window or 0
                for r in api.latency or []
                if r.verb in MUTATING_VERBS and r.metric.endswith("sli_duration_seconds")
            ),
            default=None,
        ),
        "others_apf_rejected": others_rejected,
        "others_apf_wait_p99_s": max((w["p99"] or 0 for w in others_wait), default=None),
        "dns_error_rate": _set(dns, "error_rate"),
        "dns_propagation_s": [p.seconds for p in dns.propagation] if dns else [],
        "harness_access_degraded": api.harness_access.degraded if api.harness_access else None,
        # the operator's rollback path: an admin PATCH, exempt from APF
        "break_glass_p99_s": _p99_s(glass),
        "break_glass_failed": _set(glass, "failed"),
        "agents_throttled_429": agents.throttled_429,
        "agents_apf_rejected": sum(r["count"] for r in apf.rejected if r["priority_level"] == NAME),
    }


def _set(summary: OpenLoopSummary | None, field: str) -> Any:
    """A field the measurement recorded, else None (not its default: a summary that is
    only an error has no count)."""
    return getattr(summary, field) if summary and field in summary.model_fields_set else None


def _p99_s(role: RoleSummary | None) -> float | None:
    """A client-timed role's p99 (bystander, break-glass) in seconds."""
    return role.p99_ms / 1000 if role and role.p99_ms is not None else None


HOLDS, FAILS, INCONCLUSIVE = (
    "mitigation holds",
    "mitigation does not hold",
    "mitigation inconclusive",
)


def _harm(view: dict[str, Any]) -> list[str]:
    """What broke for anyone but the agents in one run (empty: nothing did)."""
    out = []
    if view.get("others_slos_failed"):
        out.append(f"others missed {view['others_slos_failed']}")
    if view.get("harness_access_degraded") or view.get("break_glass_failed"):
        out.append(
            "the break-glass identity's access degraded "
            f"({view.get('break_glass_failed')} rollback PATCHes failed)"
        )
    return out


def verdict(without: dict[str, Any], with_: dict[str, Any]) -> tuple[str, list[str]]:
    """One round: 'holds' when, with the objects applied, nobody but the agents misses an SLO
    and the break-glass path stays usable, while without them something broke; 'inconclusive'
    when nothing broke without them either (there was nothing to mitigate)."""
    harm_with, harm_without = _harm(with_), _harm(without)
    if harm_with:
        return FAILS, [f"with mitigation, {h}" for h in harm_with]
    if not harm_without:
        return INCONCLUSIVE, [
            "nothing broke without the objects either: no harm to "
            "mitigate in this run (a bigger scenario, or --rounds more)"
        ]
    return HOLDS, [
        f"others' SLOs held (without mitigation: {'; '.join(harm_without)}); "
        f"agents were throttled {with_.get('agents_throttled_429')} times"
    ]


def judge(
    without: list[dict[str, Any]], with_: list[dict[str, Any]]
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """Every round judged: 'holds' only if it held in all of them, 'does not hold' if it
    failed in any, else 'inconclusive'. Returns the verdict, its reasons and the rounds."""
    if not without or len(without) != len(with_):
        raise ConfigError(f"rounds differ: {len(without)} without vs {len(with_)} with")
    rounds: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(without, with_, strict=True), 1):
        v, why = verdict(a, b)
        rounds.append({"round": i, "verdict": v, "reasons": why})
    verdicts = {r["verdict"] for r in rounds}
    overall = FAILS if FAILS in verdicts else HOLDS if verdicts == {HOLDS} else INCONCLUSIVE
    n = len(rounds)
    reasons = [f"round {r['round']}/{n}: {r['verdict']}: {'; '.join(r['reasons'])}" for r in rounds]
    return overall, reasons, rounds


def rerun(
    provider: ClusterProvider,
    cluster_name: str,
    cluster: Cluster,
    objs: list[dict[str, Any]],
    cfg: RunConfig,
    out: Path,
    rounds: int,
    fresh_cluster: bool,
    fresh: bool,
    log: Callable[[str], None],
) -> tuple[str, Path]:
    """The failing run's scenario again, without and with the objects, who goes first
    alternating each round (ABBA), every round judged. Runs go to out/without and out/with;
    returns the verdict and out/comparison.json.
    `fresh_cluster`: each run on a new cluster (`fresh`: the first one is new already)."""
    views: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    run_dirs: dict[str, list[str]] = {v: [] for v in VARIANTS}
    try:
        # who goes first alternates each round, as compare does: drift within a round
        # (a warming cache, a neighbour) favours neither side
        for order in abba(rounds):
            for variant in (VARIANTS[side] for side in order):
                if fresh_cluster and not fresh:
                    # each run from the same start: a run that brought the control plane
                    # down (an OOM-killed API server) leaves nothing to the next
                    provider.delete(cluster_name)
                    cluster = provider.create(cluster_name)
                fresh = False
                if variant == "with":
                    apply(cluster, objs)
                else:
                    remove(cluster)
                run_dir = MainJob(provider, cluster_name, cfg, out / variant, log).execute()
                run_dirs[variant].append(str(run_dir))
                views[variant].append(others_view(load_record(run_dir)))
    finally:
        try:
            remove(cluster)
        except (LoadtestError, httpx.HTTPError) as e:  # a control plane the run brought down
            log(f"warning: could not remove the APF objects: {e}")
    result, reasons, judged = judge(views["without"], views["with"])
    schedule = schedule_text(rounds, *VARIANTS)
    data = {
        "verdict": result,
        "reasons": reasons,
        "schedule": schedule,
        "rounds": judged,
        "runs": views,
        "run_dirs": run_dirs,
    }
    path = out / "comparison.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    for variant, vs in views.items():
        for i, v in enumerate(vs, 1):
            log(f"{variant:8} round {i}: {json.dumps(v, default=str)}")
    for line in [schedule, *reasons]:
        log(line)
    log(f"{result} ({path})")
    return result, path
