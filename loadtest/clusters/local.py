"""The Docker-less provider: a real control plane as processes on 127.0.0.1.

kwokctl's binary runtime runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and the KWOK controller from the locally built binaries; CoreDNS (kubernetes plugin, zone
cluster.local) runs beside it with the cluster's kubeconfig. Everything a cluster owns lives
under one state directory, so `delete` removes all of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import yaml

from loadtest import processes, toolchain
from loadtest.clusters import cgroups, kubeconfig
from loadtest.clusters.base import Cluster, check_name, http_client
from loadtest.clusters.fake_nodes import NODE_LEASE_DURATION_S
from loadtest.errors import ClusterError, CommandError, LoadtestError
from loadtest.proc import run, stop_group, stop_pidfile
from loadtest.wait import until

HOST = "127.0.0.1"
# How long a replaced CoreDNS keeps serving while its successor is not ready.
DNS_REPLACE_S = 10.0

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def etcd_data(name: str) -> Path:
    """Where a local cluster's etcd keeps its data: memory (/dev/shm) where there is one."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else state_root() / name
    return base / f"loadtest-etcd-{name}"


def state_root() -> Path:
    return toolchain.cache_dir() / "local"


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def dns_query(
    server: tuple[str, int], name: str, rdtype: str = "A", timeout: float = 2.0
) -> dns.message.Message:
    """One UDP query to the cluster DNS; raises dns.exception.Timeout on no answer."""
    return dns.query.udp(
        dns.message.make_query(name, rdtype), server[0], timeout=timeout, port=server[1]
    )


class LocalProvider:
    """Creates and removes local control planes; see the module docstring."""

    name = "local"

    def __init__(
        self,
        log: Log = _quiet,
        apiserver_port: int | None = None,
        apiserver_args: Mapping[str, str] | None = None,
        feature_gates: str = "",
        timeout: float = 180,
        apiserver_memory: int | None = None,
        apiserver_cpu: float | None = None,
    ) -> None:
        self.log = log
        # cores the API server may use (a control plane's size); None: what it can get
        self.apiserver_cpu = apiserver_cpu
        # bytes the API server may use (a control plane's budget); None: unlimited
        self.apiserver_memory = apiserver_memory
        self.apiserver_port = apiserver_port
        self.apiserver_args = dict(apiserver_args or {})
        self.feature_gates = feature_gates
        self.timeout = timeout

    # --- the provider protocol -------------------------------------------------------------

    def create(self, cluster_name: str) -> Cluster:
        check_name(cluster_name, 42)
        d = state_root() / cluster_name
        if d.exists():
            raise ClusterError(
                f"local cluster {cluster_name!r} already exists "
                f"(remove it with: loadtest cluster down --name {cluster_name})"
            )
        bins = {
            b: toolchain.binary(b)
            for b in (
                "kwokctl",
                "kwok",
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl",
                "coredns",
            )
        }
        if self.apiserver_port and not port_free(self.apiserver_port):
            raise ClusterError(
                f"port {self.apiserver_port} on {HOST} is in use: choose another with --port"
            )
        d.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            # 1. control plane through kwokctl, bound to loopback, from our own binaries
            if self.apiserver_memory:
                group = cgroups.cap(cluster_name, self.apiserver_memory)
                self.log(
                    f"kube-apiserver limited to {self.apiserver_memory / 2**30:.2g} GiB "
                    f"of memory ({group})"
                )
            if self.apiserver_cpu:
                group = cgroups.cap_cpu(cluster_name, self.apiserver_cpu)
                self.log(f"kube-apiserver limited to {self.apiserver_cpu:g} cores ({group})")
            if self.apiserver_memory or self.apiserver_cpu:
                bins["kube-apiserver"] = cgroups.launcher(
                    cluster_name, bins["kube-apiserver"], d / "kube-apiserver-in-budget"
                )
            self._kwokctl_create(cluster_name, d, bins)
            self.log(f"control plane up ({time.monotonic() - t0:.1f}s)")
            creds = kubeconfig.read(d / "kubeconfig")
            # 2. CoreDNS beside it, serving cluster.local from the API as kubeadm's does: with
            #    its own ServiceAccount (so APF classifies it as in a real cluster, not exempt)
            self._coredns_identity(d, creds)
            dns_addr, coredns_metrics = self._start_coredns(d, bins["coredns"])
            cluster = Cluster.from_credentials(
                creds,
                name=cluster_name,
                provider=self.name,
                kubeconfig=d / "kubeconfig",
                created_by_harness=True,
                metrics={"coredns": coredns_metrics},
                dns=dns_addr,
            )
            (d / "cluster.json").write_text(cluster.to_json())
            # 3. ready means /readyz ok and DNS answering for the kubernetes Service
            self._wait_ready(cluster)
            self.log(f"cluster {cluster_name!r} ready in {time.monotonic() - t0:.1f}s")
            return cluster
        except BaseException:
            # Nothing half-started stays behind (Ctrl-C included).
            self.delete(cluster_name)
            raise

    def restart_dns(self, cluster_name: str) -> None:
        """Replace CoreDNS as a rollout with surge does: the new instance starts beside the
        old one on the same ports (CoreDNS sets SO_REUSEPORT; its reload plugin relies on
        it), and the old one stops once the new one is ready, or after DNS_REPLACE_S anyway,
        as an eviction or OOM kill would not wait. A healthy cluster loses no query; under
        saturation the new instance's initial LISTs stall, and after 5 s it serves SERVFAIL
        for the names it does not know yet: what is measured."""
        d = state_root() / cluster_name
        old = int((d / "coredns.pid").read_text())
        # The new instance gets a ready port of its own: on a shared one, the old instance
        # (ready throughout) would answer for it.
        ready = free_port()
        corefile = d / "Corefile"
        corefile.write_text(
            re.sub(r"(?m)^(\s*ready \S+:)\d+$", rf"\g<1>{ready}", corefile.read_text())
        )
        _launch_coredns(d, toolchain.binary("coredns"))
        try:
            until(
                lambda: _http_ok(f"http://{HOST}:{ready}/ready"),
                "new CoreDNS ready",
                timeout=DNS_REPLACE_S,
            )
        except LoadtestError:
            self.log(f"new CoreDNS not ready after {DNS_REPLACE_S:g}s: stopping the old one")
        stop_group(old, grace=2)

    def apiserver_cpu_quota(self, cluster_name: str) -> float | None:
        """The cores the API server's group may use (None: no quota)."""
        return cgroups.cpu_quota(cluster_name)

    def apiserver_memory_usage(
        self, cluster_name: str, reset: bool = False
    ) -> dict[str, int | None] | None:
        """The API server's memory group: OOM kills so far and the peak charge since the
        last reset (then starts it over); None when it has no budget."""
        kills = cgroups.oom_kills(cluster_name)
        if kills is None:
            return None
        usage = {
            "apiserver_oom_kills": kills,
            "apiserver_memory_peak_bytes": cgroups.peak(cluster_name),
        }
        if reset:
            cgroups.reset_peak(cluster_name)
        return usage

    def get(self, cluster_name: str) -> Cluster | None:
        f = state_root() / cluster_name / "cluster.json"
        return Cluster.from_json(f.read_text()) if f.exists() else None

    def list(self) -> list[str]:
        root = state_root()
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []

    def delete(self, cluster_name: str) -> None:
        d = state_root() / cluster_name
        if not d.exists():
            return
        # Recorded first: a process in exit has an empty cmdline but may still hold its ports.
        pids = list(processes.mentioning(str(d)))
        stop_pidfile(d / "coredns.pid")
        kwokctl = toolchain.bin_dir() / "kwokctl"
        if (d / "kwok").exists() and kwokctl.exists():
            try:
                run(
                    [kwokctl, "delete", "cluster", "--name", cluster_name],
                    "kwokctl delete cluster",
                    env={"KWOK_WORKDIR": str(d / "kwok")},
                    timeout=120,
                )
            except CommandError as e:
                self.log(f"warning: {e}")
        for pid in processes.mentioning(str(d)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Return only when every process is gone, so its ports are free for the next cluster.
        until(
            lambda: not any(map(processes.running, pids)),
            timeout=30,
            interval=0.1,
            what=f"processes of cluster {cluster_name} to exit",
        )
        cgroups.remove(cluster_name)
        shutil.rmtree(etcd_data(cluster_name), ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)

    # --- steps -----------------------------------------------------------------------------

    def _kwokctl_create(self, name: str, d: Path, bins: dict[str, Path]) -> None:
        patches = []
        args = dict(self.apiserver_args)
        if self.feature_gates:
            args["feature-gates"] = self.feature_gates
        if args:
            patches.append(
                {
                    "name": "kube-apiserver",
                    "extraArgs": [{"key": k, "value": v} for k, v in args.items()],
                }
            )
        # etcd's data in memory: this machine's shared virtual disk stalls fsync (one in 300
        # took 150 ms, quiet), and a stalled etcd stalls reads and writes alike (a 2 s etcd
        # GET of a configmap failed the break-glass SLO at 80 nodes, the API server at 0.15
        # cores). The API server's capacity is what is measured here, not this disk.
        patches.append(
            {"name": "etcd", "extraArgs": [{"key": "data-dir", "value": str(etcd_data(name))}]}
        )
        # kwokctl renders --node-lease-duration-seconds=200 whatever its options say (v0.7.0,
        # tried): the controller's own flag, given again after it, is the one that counts.
        patches.append(
            {
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "node-lease-duration-seconds", "value": str(NODE_LEASE_DURATION_S)}
                ],
            }
        )
        options: dict[str, object] = {
            "runtime": "binary",
            # kwokctl binds kube-apiserver and etcd to 0.0.0.0 unless told otherwise.
            "bindAddress": HOST,
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "kubeApiserverBinary": str(bins["kube-apiserver"]),
            "kubeControllerManagerBinary": str(bins["kube-controller-manager"]),
            "kubeSchedulerBinary": str(bins["kube-scheduler"]),
            "kwokControllerBinary": str(bins["kwok"]),
            "etcdBinary": str(bins["etcd"]),
            "kubectlBinary": str(bins["kubectl"]),
        }
        if self.apiserver_port:
            options["kubeApiserverPort"] = self.apiserver_port
        conf = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
            "componentsPatches": patches,
        }
        (d / "kwokctl.yaml").write_text(yaml.safe_dump(conf))
        self.log("starting etcd, kube-apiserver, controller-manager, scheduler, kwok (kwokctl)")
        run(
            [
                bins["kwokctl"],
                "--config",
                d / "kwokctl.yaml",
                "create",
                "cluster",
                "--name",
                name,
                "--kubeconfig",
                d / "kubeconfig",
                "--wait",
                f"{int(self.timeout)}s",
            ],
            "kwokctl create cluster",
            env={"KWOK_WORKDIR": str(d / "kwok")},
            timeout=self.timeout + 30,
        )

    def _coredns_identity(self, d: Path, creds: kubeconfig.Credentials) -> None:
        """kube-system/coredns with kubeadm's system:coredns rules, and a kubeconfig for it."""
        admin = Cluster(
            name="",
            provider=self.name,
            kubeconfig=d / "kubeconfig",
            context="",
            server=creds.server,
            ca_file=creds.ca_file,
            client_cert=creds.client_cert,
            client_key=creds.client_key,
        )
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        with http_client(admin) as c:
            until(
                lambda: c.get("/readyz").status_code == 200,
                "kube-apiserver /readyz",
                timeout=self.timeout,
            )
            for path, obj in (
                (
                    "/api/v1/namespaces/kube-system/serviceaccounts",
                    {"metadata": {"name": "coredns"}},
                ),
                (
                    f"{rbac}/clusterroles",
                    {
                        "metadata": {"name": "system:coredns"},
                        "rules": [
                            {
                                "apiGroups": [""],
                                "resources": ["endpoints", "services", "pods", "namespaces"],
                                "verbs": ["list", "watch"],
                            },
                            {
                                "apiGroups": ["discovery.k8s.io"],
                                "resources": ["endpointslices"],
                                "verbs": ["list", "watch"],
                            },
                        ],
                    },
                ),
                (
                    f"{rbac}/clusterrolebindings",
                    {
                        "metadata": {"name": "system:coredns"},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": "system:coredns",
                        },
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "name": "coredns",
                                "namespace": "kube-system",
                            }
                        ],
                    },
                ),
            ):
                r = c.post(path, json=obj)
                if r.status_code not in (201, 409):
                    raise ClusterError(f"CoreDNS identity: {path}: HTTP {r.status_code}")
            r = c.post(
                "/api/v1/namespaces/kube-system/serviceaccounts/coredns/token",
                json={"spec": {"expirationSeconds": 7 * 86400}},
            )
            if r.status_code != 201:
                raise ClusterError(f"CoreDNS token: HTTP {r.status_code}: {r.text[:200]}")
            token = r.json()["status"]["token"]
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "coredns",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": creds.server, "certificate-authority": creds.ca_file},
                }
            ],
            "users": [{"name": "coredns", "user": {"token": token}}],
            "contexts": [{"name": "coredns", "context": {"cluster": "c", "user": "coredns"}}],
        }
        kcfg = d / "coredns.kubeconfig"
        kcfg.write_text(yaml.safe_dump(doc))
        kcfg.chmod(0o600)

    def _start_coredns(self, d: Path, coredns: Path) -> tuple[tuple[str, int], str]:
        port, metrics, health, ready = (free_port() for _ in range(4))
        # kubeadm's Corefile, minus `forward` (nothing outside is reachable here).
        corefile = f""".:{port} {{
    bind {HOST}
    errors
    health {HOST}:{health}
    ready {HOST}:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {d / "coredns.kubeconfig"} coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus {HOST}:{metrics}
    cache 30
}}
"""
        (d / "Corefile").write_text(corefile)
        self.log(f"starting CoreDNS on {HOST}:{port}")
        proc = _launch_coredns(d, coredns)
        try:
            until(
                lambda: proc.poll() is None and _http_ok(f"http://{HOST}:{ready}/ready"),
                "CoreDNS ready plugin",
                timeout=60,
            )
        except LoadtestError as e:
            if proc.poll() is not None:
                tail = (d / "coredns.log").read_text()[-2000:]
                raise CommandError(
                    "CoreDNS", _coredns_cmd(d, coredns), proc.returncode or -1, tail
                ) from e
            raise
        return (HOST, port), f"http://{HOST}:{metrics}/metrics"

    def _wait_ready(self, cluster: Cluster) -> None:
        with http_client(cluster) as c:
            until(
                lambda: c.get("/readyz").status_code == 200,
                "kube-apiserver /readyz",
                timeout=self.timeout,
            )
        assert cluster.dns is not None
        dns_addr = cluster.dns
        until(
            lambda: dns_query(dns_addr, "kubernetes.default.svc.cluster.local.").answer,
            "CoreDNS to answer kubernetes.default.svc.cluster.local",
            timeout=60,
        )


def _coredns_cmd(d: Path, coredns: Path) -> list[str]:
    return [str(coredns), "-conf", str(d / "Corefile")]


def _launch_coredns(d: Path, coredns: Path) -> subprocess.Popen[bytes]:
    with (d / "coredns.log").open("ab") as out:
        proc = subprocess.Popen(
            _coredns_cmd(d, coredns),
            cwd=d,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (d / "coredns.pid").write_text(str(proc.pid))
    return proc


def _http_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=2).status_code == 200
