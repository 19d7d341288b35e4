"""Faults the probes must see: kube-apiserver stopped (SIGSTOP) for 12 s, CoreDNS for 5 s.

A closed-loop probe records such a stall as one slow sample and a burst of fast ones; an
open-loop one records every slot due meanwhile as failed (unsent, timed out) or late (its
latency from schedule above the SLO threshold), and its SLOs fail. Its own cluster: stopping
the session cluster's API server would disturb the tests after this one.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.clusters import Cluster, get_provider
from loadtest.clusters.local import state_root
from loadtest.measurements import bystander as bystander_m
from loadtest.measurements import dns as dns_m
from loadtest.measurements import openloop
from loadtest.measurements.host import cluster_pids
from loadtest.results import read_jsonl
from loadtest.verdict import slo
from loadtest.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    name = f"probe-faults-{uuid.uuid4().hex[:6]}"
    provider = get_provider("local")
    c = provider.create(name)
    try:
        yield c
    finally:
        provider.delete(name)


def _slots(raw: Path) -> openloop.Slots:
    """A probe's raw stream as slots (the timeout is its start record's once written)."""
    return openloop.read_slots(read_jsonl(raw), bystander_m.TIMEOUT_S)


def _answered_after(raw: Path, t_mono: float) -> int:
    """Slots scheduled after a moment on the monotonic clock and answered."""
    s = _slots(raw)
    if not s.start:
        return 0
    t = s.sched_of(t_mono)
    return sum(1 for r in s.slots if r["sched"] > t and r["cause"] is None)


def _stall(pid: int, seconds: float, raws: list[Path]) -> tuple[float, float]:
    """Steady answers first, then the process stopped for `seconds`, then answers again.
    Returns when it was surely stopped, on the monotonic clock (the probes' schedule runs on
    it; the wall clock may step meanwhile): from just after SIGSTOP to just before SIGCONT,
    so a pause of this process between the signal and the clock read only shortens it."""
    until(lambda: all(_answered_after(r, 0) >= 10 for r in raws), "steady answers", timeout=60)
    wall_minus_mono = time.time() - time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        time.sleep(seconds)  # the fault itself
    finally:
        t_cont = time.monotonic()
        os.kill(pid, signal.SIGCONT)
    step = time.time() - time.monotonic() - wall_minus_mono
    if abs(step) > 0.5:
        print(f"\nthe wall clock stepped {step:+.1f} s during the stall")
    until(
        lambda: all(_answered_after(r, t_cont + 1) >= 10 for r in raws),
        "answers again after the stall",
        timeout=60,
    )
    return t_stop, t_cont


def _in_stall(
    slots: openloop.Slots, t_stop: float, t_cont: float, late_ms: float
) -> dict[str, Any]:
    """The slots due during the stall (monotonic times) early enough to be late by `late_ms`
    when it ends: how many failed (by cause) or came late. (A slot due in its last `late_ms`
    is answered within that once the server runs again: honestly not late.)"""
    lo, hi = slots.sched_of(t_stop), slots.sched_of(t_cont) - late_ms / 1000
    due = [r for r in slots.slots if lo <= r["sched"] <= hi]
    failed = [r for r in due if r["cause"] is not None]
    late = [r for r in due if r["cause"] is None and slots.value_ms(r) > late_ms]
    return {
        "due": len(due),
        "failed": openloop.tally(r["cause"] for r in failed),
        "late": len(late),
        "share": (len(failed) + len(late)) / max(len(due), 1),
    }


def _totals(summaries: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {
        n: f"{s['failed']} of {s['scheduled']} failed, p50 {s['p50_ms']:.0f} ms, p99 "
        f"{s['p99_ms']:.0f} ms"
        for n, s in summaries.items()
        if "error" not in s
    }


def _pid(cluster: Cluster, component: str) -> int:
    pids = [p for p, c in cluster_pids(state_root() / cluster.name).items() if c == component]
    assert len(pids) == 1, f"{component}: {pids}"
    return pids[0]


def _slos(measurements: dict[str, Any]) -> dict[str, str]:
    """The probes' SLOs (the API server's own need its metrics, not measured here)."""
    return {
        r.name: r.status
        for r in slo.evaluate({"measurements": measurements}, slo.SLOSpec())
        if not r.name.startswith("api-")
    }


def test_apiserver_stall_fails_the_other_tenant_and_break_glass(cluster, tmp_path, capsys):
    (tmp_path / "cluster.json").write_text(cluster.to_json())
    roles = bystander_m.ROLES
    # a slot is late past its SLO threshold
    late_s = {
        "bystander": slo.ApiSLO().read_namespace_p99_s,
        "break_glass": slo.ApiSLO().mutating_p99_s,
    }
    probes = {
        n: bystander_m.Bystander(
            cluster, tmp_path / "cluster.json", tmp_path / f"{n}.jsonl", role=r
        )
        for n, r in roles.items()
    }
    for p in probes.values():
        p.start()
    try:
        # longer than the probes' timeout, so the first slots due in it fail (a stall of
        # exactly the timeout made them late or failed by a few ms either way)
        t_stop, t_cont = _stall(
            _pid(cluster, "kube-apiserver"),
            bystander_m.TIMEOUT_S + 2,
            [p.raw for p in probes.values()],
        )
    finally:
        summaries = {n: p.gather() for n, p in probes.items()}
    verdict = _slos(summaries)
    seen = {
        n: _in_stall(_slots(p.raw), t_stop, t_cont, late_s[n] * 1000) for n, p in probes.items()
    }
    with capsys.disabled():
        print(
            f"\napiserver stall {t_cont - t_stop:.1f}s: in it {seen}; in all {_totals(summaries)}"
            f"; SLOs {verdict}"
        )
    for n, s in seen.items():  # 5 slots a second through the stall, less the role's threshold
        assert s["due"] >= 0.9 * 5 * (t_cont - t_stop - late_s[n]), (n, s)
        assert s["share"] >= 0.9, (n, s)
    assert verdict["others-latency"] == verdict["others-errors"] == "fail"
    assert verdict["break-glass"] == "fail"


def test_coredns_stall_fails_the_dns_probe(cluster, tmp_path, capsys):
    probe = dns_m.DnsProbe(cluster.dns, dns_m.default_names(), tmp_path / "dns.jsonl")
    probe.start()
    try:
        pid = int((state_root() / cluster.name / "coredns.pid").read_text())
        t_stop, t_cont = _stall(pid, 5, [probe.raw])
    finally:
        summary = probe.gather()
    verdict = _slos({"dns": summary})
    seen = _in_stall(_slots(probe.raw), t_stop, t_cont, slo.DnsSLO().p99_ms)
    with capsys.disabled():
        print(
            f"\ncoredns stall {t_cont - t_stop:.1f}s: in it {seen}; in all "
            f"{_totals({'dns': summary})}; SLOs {verdict}"
        )
    assert seen["due"] >= 45 and seen["share"] >= 0.9, seen
    assert verdict["dns-errors"] == verdict["dns-latency-p99"] == "fail"
