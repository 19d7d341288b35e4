"""The main job behind `make loadtest`: cluster -> inventory -> agents under measurement ->
SLO verdict -> results folder.

Results are written as the run goes (raw streams, a summary after every stage), so a crash
or Ctrl-C keeps what was measured; `loadtest summarize DIR` rebuilds the summary from raw.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loadtest.agents.profile import load_profile
from loadtest.agents.runner import AgentRun, run_agents
from loadtest.clusters import require_load_allowed
from loadtest.clusters.base import (
    Cluster,
    ClusterProvider,
    apply_object,
    http_client,
    response_message,
    unreachable,
    wait_ready,
)
from loadtest.clusters.capabilities import (
    BudgetsApiserverMemory,
    LimitsApiserverCpu,
    ProbesDNSInNamespace,
    RestartsDNS,
    RunsFakeNodesBeside,
    RunsPods,
)
from loadtest.errors import ClusterError, LoadtestError
from loadtest.inventory.seed import Seeder, namespace_name
from loadtest.measurements import client as client_m
from loadtest.measurements import dns as dns_m
from loadtest.measurements import dns_pods, probe_service
from loadtest.measurements import machine as machine_m
from loadtest.measurements.apiserver import ApiserverMetrics
from loadtest.measurements.apiserver import summarize as summarize_apiserver
from loadtest.measurements.base import Measurement
from loadtest.measurements.bystander import ROLES, Bystander
from loadtest.measurements.bystander import summarize as summarize_bystander
from loadtest.measurements.coredns import CorednsMetrics
from loadtest.measurements.coredns import summarize as summarize_coredns
from loadtest.measurements.machine import MachineCpu
from loadtest.measurements.progress import Progress
from loadtest.results import environment, new_run_dir, read_jsonl
from loadtest.run.config import RunConfig
from loadtest.run.record import read_summary, write_summary
from loadtest.verdict import slo

Log = Callable[[str], None]


BREAK_GLASS_FS = "loadtest-break-glass"


def ensure_break_glass(cluster: Cluster, warn: Log) -> str:
    """Keep the harness's own view when agents are throttled: its identity's groups go to
    APF's exempt level. system:masters (the local provider) is exempt already; kubeadm's
    admin (kind) is in kubeadm:cluster-admins, which is not, so a FlowSchema maps it there.
    Only on clusters the harness created. Returns who whoami says the harness is, and says
    "exempt via FlowSchema" only once the API server took it; a refusal is a warning (the
    run goes on, measuring a break-glass path that APF may throttle)."""
    with http_client(cluster) as c:
        try:
            user = _whoami(c)
        except ClusterError as e:
            warn(f"who the harness is is unknown, so it is not mapped to APF's exempt level: {e}")
            return "unknown (SelfSubjectReview failed)"
        groups = [g for g in user.get("groups", []) if g not in ("system:authenticated",)]
        who = f"{user.get('username', '?')} {groups}"
        if "system:masters" in groups or not groups or not cluster.created_by_harness:
            return who
        try:
            apply_object(
                c,
                "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
                {
                    "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                    "kind": "FlowSchema",
                    "metadata": {"name": BREAK_GLASS_FS},
                    "spec": {
                        "priorityLevelConfiguration": {"name": "exempt"},
                        "matchingPrecedence": 2,
                        "rules": [
                            {
                                "subjects": [
                                    {"kind": "Group", "group": {"name": g}} for g in groups
                                ],
                                "resourceRules": [
                                    {
                                        "verbs": ["*"],
                                        "apiGroups": ["*"],
                                        "resources": ["*"],
                                        "clusterScope": True,
                                        "namespaces": ["*"],
                                    }
                                ],
                                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                            }
                        ],
                    },
                },
            )
        except ClusterError as e:
            warn(f"the harness's identity is not exempt from APF: {e}")
            return f"{who} (NOT exempt: FlowSchema {BREAK_GLASS_FS} refused)"
    return f"{who} -> exempt via FlowSchema {BREAK_GLASS_FS}"


def _whoami(c: httpx.Client) -> dict[str, Any]:
    """The harness's userInfo by SelfSubjectReview; no answer or a refusal is one line."""
    try:
        r = c.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except httpx.HTTPError as e:
        raise ClusterError(f"SelfSubjectReview: no answer: {type(e).__name__}: {e}") from None
    if r.status_code != 201:
        raise ClusterError(f"SelfSubjectReview: HTTP {r.status_code}: {response_message(r)}")
    return dict(r.json().get("status", {}).get("userInfo", {}))


def check_cluster(cluster: Cluster) -> dict[str, Any]:
    """Fail at once, in one line, when the cluster cannot be reached."""
    try:
        with http_client(cluster, timeout=5) as c:
            elapsed = wait_ready(c, cluster)
            version = c.get("/version").json().get("gitVersion", "?")
    except (httpx.HTTPError, OSError, ValueError) as e:  # transport, TLS, a non-JSON answer
        raise unreachable(cluster, e) from None
    return {"readyz_s": round(elapsed, 4), "version": version}


class MainJob:
    """One run; `execute` returns the results folder. Stages write as they go."""

    def __init__(
        self,
        provider: ClusterProvider,
        cluster_name: str,
        cfg: RunConfig,
        out_root: Path,
        log: Log,
        keep_cluster: bool = True,
        allow_existing: bool = False,
    ) -> None:
        self.provider = provider
        self.cluster_name = cluster_name
        self.cfg = cfg
        self.log = log
        self.keep_cluster = keep_cluster
        self.allow_existing = allow_existing
        # a bad profile fails before anything starts; recorded as resolved now
        self.profile = load_profile(cfg.profile)
        self.slos = slo.load_slos(Path(cfg.slo_file) if cfg.slo_file else None)
        self.out_root = out_root
        # Made once the cluster answers: a run that never reached one (a bad kubeconfig, no
        # such cluster) leaves no folder behind.
        self._dir: Path | None = None
        # "slos": as resolved now, so reports and verdicts later judge by these
        self.summary: dict[str, Any] = {
            "environment": environment(),
            "config": cfg.model_dump(),
            "profile": self.profile.model_dump(),
            "slos": self.slos.model_dump(),
            "stages": {},
            "measurements": {},
        }
        self._propagation_error: str | None = None
        self._probe_service_made = False

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise LoadtestError("the run has no results folder yet (no cluster reached)")
        return self._dir

    def save(self) -> None:
        if self._dir is not None:
            write_summary(self._dir, self.summary)

    def warn(self, why: str) -> None:
        """A problem the run goes on with: logged, and recorded in the summary."""
        self.log(f"warning: {why}")
        self.summary.setdefault("warnings", []).append(why)
        self.save()

    def stage(self, name: str, **info: Any) -> None:
        self.summary["stages"][name] = {"t": time.time(), **info}
        self.save()

    def execute(self) -> Path:
        created = False
        try:
            cluster = self.provider.get(self.cluster_name)
            if cluster is None:
                self.log(f"creating {self.provider.name} cluster {self.cluster_name!r}")
                cluster = self.provider.create(self.cluster_name)
                created = True
            require_load_allowed(cluster, self.allow_existing)
            reached = check_cluster(cluster)
            self._dir = new_run_dir(self.out_root, self.cfg.profile)
            self.log(f"results: {self._dir}")
            self.save()
            self.summary["cluster"] = {
                **cluster.redacted(),
                **reached,
                "harness_identity": ensure_break_glass(cluster, self.warn),
                "apiserver_memory_bytes": self._memory_budget(),
                "apiserver_cpu_cores": self._cpu_quota(),
            }
            self.stage("cluster", created=created)
            self._seed(cluster)
            self._load(cluster)
            self._verdict()
        except KeyboardInterrupt:
            self.summary["interrupted"] = True
            self.save()
            raise
        except LoadtestError as e:
            self.summary["failed"] = str(e)
            self.save()
            raise
        finally:
            if created and not self.keep_cluster:
                self.log(f"removing {self.provider.name} cluster {self.cluster_name!r}")
                self.provider.delete(self.cluster_name)
        return self.dir

    def _seed(self, cluster: Cluster) -> None:
        if isinstance(self.provider, RunsFakeNodesBeside):
            pid = self.provider.ensure_fake_nodes(cluster)
            self.log(
                f"KWOK controller for fake nodes runs beside the {self.provider.name} "
                f"cluster (pid {pid})"
            )
        seeder = Seeder(cluster, self.cfg.inventory, log=self.log)
        result = seeder.seed()
        ready = seeder.wait_ready(timeout=600)
        self.summary["inventory"] = {
            "spec": self.cfg.inventory.model_dump(),
            "created": result.created,
            "existing": result.existing,
            "seconds": result.seconds,
            **ready,
        }
        self.stage("inventory")

    def _load(self, cluster: Cluster) -> None:
        raw = self.dir / "raw"
        api = ApiserverMetrics(cluster, raw / "apiserver.jsonl", self.cfg.scrape_interval_s)
        coredns = CorednsMetrics(cluster, raw / "coredns.jsonl", self.cfg.scrape_interval_s)
        probe = self._dns_probe(cluster, raw / "dns.jsonl")
        (self.dir / "cluster.json").write_text(cluster.to_json())  # no token in it
        # scrapes and bystanders; the DNS probe apart (it times propagation too)
        scrapes: list[Measurement] = [
            api,
            coredns,
            MachineCpu(raw / "machine.jsonl", self.cfg.scrape_interval_s),
            *(
                Bystander(cluster, self.dir / "cluster.json", raw / f"{role}.jsonl", role=r)
                for role, r in ROLES.items()
            ),
        ]
        if probe:  # first: from pods it deploys them (and waits for them)
            probe.start()
        self._apiserver_memory(reset=True)  # this run's peak, not the seeding's
        for m in scrapes:
            m.start()
        self.stage("measurements-started", dns=bool(probe))
        if self.cfg.idle_window_s:
            self.stage(
                "idle", **api.wait_idle(self.cfg.idle_window_s, self.cfg.idle_max_s, self.log)
            )
        timer = None
        changed_at: list[float] = []
        if probe and self.cfg.propagation_check:
            # A new Service during the load: how long until cluster DNS serves it?
            timer = threading.Timer(
                self.cfg.duration_s / 3, self._new_service, (cluster, probe, changed_at)
            )
            timer.start()
        restart = None
        if self.cfg.restart_dns_at_s is not None:
            restart = threading.Timer(self.cfg.restart_dns_at_s, self._restart_dns, (changed_at,))
            restart.start()
        run = AgentRun(
            profile=self.cfg.profile,
            agents=self.cfg.agents,
            duration_s=self.cfg.duration_s,
            spawn_rate=self.cfg.spawn_rate,
            shape=self.cfg.shape,
            steps=self.cfg.steps,
            processes=self.cfg.processes,
            workers=self.cfg.workers,
            master_bind=self.cfg.master_bind,
        )
        pool = None
        if self.cfg.workers_in_cluster:
            from loadtest.agents.pods import in_cluster_workers

            run, pool = in_cluster_workers(
                cluster, run, self.cfg.workers_in_cluster, self.cfg.worker_image or None, self.log
            )
        progress = Progress(self.dir / "agents", raw / "apiserver.jsonl", self.log).start()
        try:
            run_agents(cluster, run, self.dir / "agents", self.log, pool)
        finally:
            progress.stop()
            for t in (timer, restart):
                if t:
                    t.cancel()
            if timer:
                timer.join()  # a probe Service being made now is made before the cleanup
            if probe:
                self._probe_long_enough(changed_at)
            for m in scrapes:
                self.summary["measurements"][m.name] = m.gather()
            self._log_apiservers(self.summary["measurements"]["apiserver"])
            if probe:
                self.summary["measurements"]["dns"] = dns_pods.with_where(probe.gather(), cluster)
                if timer and not self._probe_service_made:
                    self.summary["measurements"]["dns"]["propagation_error"] = (
                        self._propagation_error
                        or "no probe Service was made: the load "
                        f"ended before it was due ({self.cfg.duration_s / 3:.0f}s in)"
                    )
            self.summary["measurements"]["client"] = client_m.summarize(self.dir / "agents")
            self.summary["cluster"].update(self._apiserver_memory() or {})
            if timer:
                self._remove_probe_services(cluster)
            servers = self.summary["measurements"]["apiserver"].get("servers") or {}
            if len(servers) == 1 and "apiserver_oom_kills" in self.summary["cluster"]:
                # the provider's memory group holds the one API server (local)
                next(iter(servers.values()))["oom_kills"] = self.summary["cluster"][
                    "apiserver_oom_kills"
                ]
            self.stage("load")

    def _log_apiservers(self, api: dict[str, Any]) -> None:
        """How many API servers were measured, and the harness's own failures apart."""
        d = api.get("discovery", {})
        self.log(
            f"API servers measured: {api.get('servers_measured', 0)} of "
            f"{api.get('servers_scraped', 0)} scraped (from {d.get('source', '?')})"
            + (f"; {d['note']}" if d.get("note") else "")
        )
        errors = api.get("harness_errors") or {}
        if errors.get("count"):
            self.log(
                f"warning: {errors['count']} harness error(s), not the API server's: "
                f"{errors['errors'][0]}"
            )

    def _memory_budget(self) -> int | None:
        """The API server's memory budget in bytes, where the provider gives it one."""
        if isinstance(self.provider, BudgetsApiserverMemory):
            return self.provider.apiserver_memory
        return None

    def _cpu_quota(self) -> float | None:
        """The API server's CPU quota in cores, where the provider gives it one."""
        if isinstance(self.provider, LimitsApiserverCpu):
            return self.provider.apiserver_cpu_quota(self.cluster_name)
        return None

    def _apiserver_memory(self, reset: bool = False) -> dict[str, int | None] | None:
        """OOM kills and peak memory of the API server, where the provider budgets it."""
        if isinstance(self.provider, BudgetsApiserverMemory):
            return self.provider.apiserver_memory_usage(self.cluster_name, reset=reset)
        return None

    def _dns_probe(self, cluster: Cluster, raw: Path) -> dns_pods.DnsMeasurement | None:
        if cluster.dns is None:
            self.summary["measurements"]["dns"] = {
                "error": f"no cluster DNS reachable from the harness for provider "
                f"{cluster.provider!r}"
            }
            return None
        inv = self.cfg.inventory
        services = [
            (namespace_name(inv, j), f"app-{k}")
            for j in range(min(inv.namespaces, 3))
            for k in range(min(inv.services_per_namespace, 2))
        ]
        netns_pid = None
        if isinstance(self.provider, ProbesDNSInNamespace):
            netns_pid = self.provider.dns_netns_pid(cluster)
            self.log(
                "DNS probes run in the network namespace of "
                f"{cluster.dns_via_container or f'pid {netns_pid}'}"
            )
        node = dns_m.DnsProbe(
            cluster.dns,
            dns_m.default_names(services),
            raw,
            rate_hz=self.cfg.dns_rate_hz,
            netns_pid=netns_pid,
        )
        if not isinstance(self.provider, RunsPods):
            return node  # no pods to probe from (local): the summary says where it ran
        # the pods' view is the run's DNS; the node-namespace probe runs beside it
        bound_s = self.cfg.duration_s + self.cfg.dns_min_probe_s + 900
        provider = self.provider
        return dns_pods.PodDnsProbe(
            cluster,
            raw.with_name("dns_pods.jsonl"),
            dns_pods.probe_names(services[0] if services else None),
            self.cfg.dns_rate_hz,
            bound_s,
            load_image=lambda image: provider.load_image(cluster.name, image),
            node_probe=node,
            log=self.log,
        )

    def _new_service(
        self, cluster: Cluster, probe: dns_pods.DnsMeasurement, changed_at: list[float]
    ) -> None:
        name = f"lt-propagation-{int(time.time())}"
        try:
            fqdn = probe_service.create(cluster, name)
        except ClusterError as e:  # refused, or an API server the load brought down
            self._propagation_error = f"could not create the probe Service: {e}"
            self.warn(self._propagation_error)
            return
        self._probe_service_made = True
        changed_at.append(time.time())
        probe.expect_propagation(fqdn)
        self.log(f"created Service {name}; timing its DNS propagation")

    def _remove_probe_services(self, cluster: Cluster) -> None:
        """The run's probe Service (and any a crashed run left) goes: the inventory does not
        grow by one Service per run."""
        try:
            gone = probe_service.delete_all(cluster)
        except ClusterError as e:
            self.warn(f"{e} (`loadtest seed --delete` removes them later)")
            return
        if gone:
            self.log(f"removed probe Service(s) {', '.join(gone)}")

    def _restart_dns(self, changed_at: list[float]) -> None:
        if not isinstance(self.provider, RestartsDNS):
            self.log(f"warning: provider {self.provider.name} cannot restart cluster DNS")
            return
        self.log("restarting CoreDNS during the load")
        changed_at.append(time.time())
        self.provider.restart_dns(self.cluster_name)
        self.stage("dns-restarted")

    def _probe_long_enough(self, changed_at: list[float]) -> None:
        """Keep probing past the caches' TTLs after the last change (new Service, restart)."""
        if not changed_at:
            return
        left = max(changed_at) + self.cfg.dns_min_probe_s - time.time()
        if left > 0:
            self.log(
                f"probing DNS {left:.0f}s more (at least {self.cfg.dns_min_probe_s:.0f}s "
                "after the change: caches hide failures at first)"
            )
            time.sleep(left)  # bounded: the probe thread does the work meanwhile

    def _verdict(self) -> None:
        results = slo.evaluate(self.summary, self.slos)
        self.summary["slo"] = [
            {
                "name": r.name,
                "status": r.status,
                "expected": r.expected,
                "measured": r.measured,
                "violations": r.violations,
            }
            for r in results
        ]
        failed = [r for r in results if r.status != "pass"]
        self.summary["verdict"] = "fail" if failed else "pass"
        self.save()
        for r in results:
            self.log(f"SLO {r.status.upper():5} {r.message}")
        from loadtest.report.parts import draw  # matplotlib only when reporting
        from loadtest.report.run import write_run_report

        draw(lambda: write_run_report(self.dir), self.log)


def run_verdict_pytest(run_dir: Path, slo_file: str = "") -> int:
    """The SLO verdict through pytest (one test per SLO, junit XML in the results)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "loadtest.verdict.pytest_plugin",
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        str(Path(__file__).parent.parent / "verdict" / "pytest_verdict.py"),
        "--loadtest-results",
        str(run_dir),
        f"--junitxml={run_dir / 'verdict.xml'}",
    ]
    if slo_file:
        cmd += ["--loadtest-slo", slo_file]
    return subprocess.run(cmd).returncode


def rebuild_summary(run_dir: Path) -> dict[str, Any]:
    """Recompute the measurements of a summary from the raw streams (after a crash)."""
    summary = read_summary(run_dir) if (run_dir / "summary.json").exists() else {}
    m = summary.setdefault("measurements", {})
    m["apiserver"] = summarize_apiserver(read_jsonl(run_dir / "raw" / "apiserver.jsonl"))
    for role, r in ROLES.items():
        m[role] = summarize_bystander(read_jsonl(run_dir / "raw" / f"{role}.jsonl"), r)
    if (run_dir / "raw" / "dns.jsonl").exists():
        propagation_error = (m.get("dns") or {}).get("propagation_error")  # not in raw
        m["dns"] = dns_m.summarize(read_jsonl(run_dir / "raw" / "dns.jsonl"))
        if (run_dir / "raw" / "dns_pods.jsonl").exists():  # kind: the pods' view, node's beside
            m["dns"] = dns_pods.summarize(read_jsonl(run_dir / "raw" / "dns_pods.jsonl"), m["dns"])
        if propagation_error:
            m["dns"]["propagation_error"] = propagation_error
    if (run_dir / "raw" / "coredns.jsonl").exists():
        m["coredns"] = summarize_coredns(read_jsonl(run_dir / "raw" / "coredns.jsonl"))
    if (run_dir / "raw" / "machine.jsonl").exists():
        m["machine"] = machine_m.summarize(read_jsonl(run_dir / "raw" / "machine.jsonl"))
    if (run_dir / "agents").exists():
        m["client"] = client_m.summarize(run_dir / "agents")
    summary["rebuilt_from_raw"] = True
    write_summary(run_dir, summary)
    return summary
