"""DNS as pods see it (kind): probe pods on every real worker, their results streamed back.

A DaemonSet runs `dnsprobe` (probes/dnsprobe/, a static Go binary in an image made here by
`docker import` and `kind load`, no registry) in its own namespace beside a Service of its
own. Each pod resolves names as applications do, through its own /etc/resolv.conf as the
kubelet wrote it (the kube-dns Service address, the namespace's search list, ndots:5) with
glibc's search-list, retry and timeout semantics, open-loop: slots on a fixed schedule from
the pod's start, latency from the scheduled time, a timeout or an unsent slot a failure.
Each lookup is one JSON line in the pod's log, which the harness follows through the API
server as it is written (loadtest/clusters/podlogs.py) into raw/dns_pods.jsonl.

Names, by kind: `kubernetes` (kubernetes.default: the second search domain answers),
`service` (SERVICE.NAMESPACE of a seeded Service), `short` (the probe namespace's own Service
by its bare name: the first search domain), `external` (a name under .invalid, RFC 6761: it
walks the whole search list, then as-is; NXDOMAIN), `fqdn` (kubernetes.default.svc.cluster.local.
with its trailing dot: one query, as the node-namespace probe asks).

kubeadm's Corefile forwards names outside cluster.local to the node's resolvers; here that
would send probe traffic off the machine (an external name's last candidate, any name's when
CoreDNS answers SERVFAIL). On clusters the harness created, CoreDNS is made offline first, as
the local provider's is (`offline_corefile`).

On kind the pods' view is the run's `dns` measurement (the DNS SLOs judge it); the
node-namespace probe runs beside it for comparison (`node_namespace`) and times the
propagation of new Services, which needs names given during the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from loadtest import toolchain
from loadtest.clusters.base import Cluster, apply_object, http_client
from loadtest.clusters.podlogs import PodLogFollower
from loadtest.errors import ClusterError
from loadtest.measurements import dns as dns_m
from loadtest.measurements.base import Measurement, Ticker
from loadtest.proc import run
from loadtest.results import JsonlWriter, read_jsonl
from loadtest.wait import until

Log = Callable[[str], None]

NAMESPACE = "loadtest-dnsprobe"
APP = "dnsprobe"
TARGET = "dnsprobe-target"  # the probe namespace's own Service, looked up by its short name
EXTERNAL = "lt-probe.example.invalid"
IMAGE_REPO = "localhost/loadtest/dnsprobe"
LABEL = ("loadtest.io/probe", "dns")
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
OFFLINE_MARK = "# loadtest: offline, nothing is sent upstream (loadtest/measurements/dns_pods.py)"
WHERE = {
    "pods": "pods on every real worker, through the kube-dns Service with the pod's "
    "resolv.conf (search list, ndots) and glibc's retries",
    "node-namespace": "a worker node's network namespace: fully qualified names straight "
    "to the kube-dns Service address, no search list",
    "host": "the harness's host: fully qualified names straight to CoreDNS; the local "
    "provider has no pods, so no pod resolver (search list, ndots) is in the path",
}


def _quiet(_: str) -> None:
    pass


class DnsMeasurement(Measurement, Protocol):
    """What the main job needs of a DNS probe, the node-side one or the pods': a measurement
    that also times the propagation of a name made during the run."""

    def expect_propagation(self, name: str) -> None: ...


def probe_names(seeded: tuple[str, str] | None) -> list[tuple[str, str, bool]]:
    """(kind, name, must exist) for every name the pods resolve."""
    names = [("kubernetes", "kubernetes.default", True)]
    if seeded:
        names.append(("service", f"{seeded[1]}.{seeded[0]}", True))
    names += [
        ("short", TARGET, True),
        ("external", EXTERNAL, False),
        ("fqdn", "kubernetes.default.svc.cluster.local.", True),
    ]
    return names


# --- CoreDNS offline --------------------------------------------------------------------------

_FORWARD = re.compile(r"^[ \t]*forward[ \t]+\.[^\n{]*(\{[^}]*\})?[ \t]*\n", re.M)
_KUBERNETES = re.compile(r"^([ \t]*)kubernetes[ \t]", re.M)


def offline_corefile(corefile: str) -> str | None:
    """kubeadm's Corefile with nothing sent upstream (pure; None when done already).

    No `forward`, as on the local provider: names outside cluster.local get SERVFAIL (no
    plugin left to answer them), except the two kinds the probe's searches end in, which
    CoreDNS answers NXDOMAIN itself, as an upstream would: single-label names (the as-is try
    of a short name that is not a Service) and names under .invalid (RFC 6761 asks resolvers
    to answer those themselves). The kubernetes plugin never serves either.
    """
    if OFFLINE_MARK in corefile:
        return None
    m = _KUBERNETES.search(corefile)
    if m is None:
        raise ClusterError("CoreDNS's Corefile has no kubernetes plugin: not kubeadm's")
    i = m.group(1)
    template = (
        f"{i}{OFFLINE_MARK}\n{i}template ANY ANY {{\n"
        f'{i}   match "^[^.]+\\.$" "(^|\\.)invalid\\.$"\n'
        f"{i}   rcode NXDOMAIN\n{i}   fallthrough\n{i}}}\n"
    )
    text = _FORWARD.sub("", corefile)
    m = _KUBERNETES.search(text)
    assert m is not None
    return text[: m.start()] + template + text[m.start() :]


def ensure_offline_dns(cluster: Cluster, log: Log = _quiet, timeout: float = 180) -> bool:
    """Make CoreDNS offline (see the module docstring) on a cluster the harness created, and
    wait for its restarted pods; False (and nothing changed) on any other cluster."""
    if not cluster.created_by_harness:
        log(
            "warning: not our cluster: CoreDNS keeps its Corefile; names outside cluster.local "
            "go to its upstream resolvers"
        )
        return False
    cm_path = "/api/v1/namespaces/kube-system/configmaps/coredns"
    deploy = "/apis/apps/v1/namespaces/kube-system/deployments/coredns"
    with http_client(cluster) as c:
        cm = c.get(cm_path)
        if cm.status_code != 200:
            raise ClusterError(f"reading CoreDNS's ConfigMap: HTTP {cm.status_code}")
        doc = cm.json()
        new = offline_corefile(doc["data"]["Corefile"])
        if new is None:
            return True
        doc["data"]["Corefile"] = new
        r = c.put(cm_path, json=doc)
        if r.status_code != 200:
            raise ClusterError(f"writing CoreDNS's Corefile: HTTP {r.status_code} {r.text[:200]}")
        log(
            "CoreDNS made offline (no forward; single-label and .invalid names answered "
            "NXDOMAIN by CoreDNS); restarting it"
        )
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r = c.patch(
            deploy,
            json={
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}
                    }
                }
            },
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        if r.status_code != 200:
            raise ClusterError(f"restarting CoreDNS: HTTP {r.status_code} {r.text[:200]}")

        def rolled_out() -> bool:
            d = c.get(deploy).json()
            s, want = d.get("status", {}), d["spec"].get("replicas", 1)
            return (
                s.get("observedGeneration", 0) >= d["metadata"]["generation"]
                and s.get("updatedReplicas") == want == s.get("availableReplicas")
                and s.get("replicas") == want
            )

        until(rolled_out, "the restarted CoreDNS Deployment", timeout=timeout, interval=1)
    return True


# --- the image and the DaemonSet -------------------------------------------------------------


def probe_image(load_image: Callable[[str], None], log: Log = _quiet) -> str:
    """The probe binary in a one-file image (`docker import`), loaded into the nodes by
    `load_image` (the provider's, no registry); tagged by the binary's hash so a rebuilt
    probe is a new image."""
    binary = toolchain.binary("dnsprobe")
    tag = f"{IMAGE_REPO}:{hashlib.sha256(binary.read_bytes()).hexdigest()[:12]}"
    try:
        run(["docker", "image", "inspect", tag], "docker image inspect", timeout=30)
    except Exception:  # noqa: BLE001 - absent: build it
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "etc").mkdir()
            (root / "tmp").mkdir(mode=0o1777)
            shutil.copy2(binary, root / "dnsprobe")
            (root / "etc" / "passwd").write_text("nobody:x:65534:65534:nobody:/:/dnsprobe\n")
            (root / "etc" / "group").write_text("nogroup:x:65534:\n")
            run(
                [
                    "sh",
                    "-c",
                    f"tar -C {root} --numeric-owner -c . | docker import "
                    f"-c 'ENTRYPOINT [\"/dnsprobe\"]' -c 'USER 65534' - {tag}",
                ],
                "docker import of the DNS probe image",
                timeout=120,
            )
        log(f"built DNS probe image {tag}")
    load_image(tag)
    return tag


def manifests(
    image: str, names: list[tuple[str, str, bool]], rate_hz: float, max_s: float
) -> list[tuple[str, dict[str, Any]]]:
    """(collection, object) to create, in order: namespace, its Service, the DaemonSet."""
    meta = {"namespace": NAMESPACE, "labels": {LABEL[0]: LABEL[1]}}
    args = [f"--rate={rate_hz:g}", f"--duration={int(max_s)}s"]
    args += [f"--{'name' if exists else 'missing'}={kind}={name}" for kind, name, exists in names]
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    ns = f"/api/v1/namespaces/{NAMESPACE}"
    return [
        (
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "labels": meta["labels"]},
            },
        ),
        (
            f"{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": TARGET, **meta},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
        ),
        (
            f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets",
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": APP, **meta},
                "spec": {
                    "selector": {"matchLabels": {"app": APP}},
                    "template": {
                        "metadata": {"labels": {"app": APP, LABEL[0]: LABEL[1]}},
                        "spec": {
                            # real workers only: not the control plane, not KWOK's fake nodes
                            "affinity": {
                                "nodeAffinity": {
                                    "requiredDuringSchedulingIgnoredDuringExecution": {
                                        "nodeSelectorTerms": [
                                            {
                                                "matchExpressions": [
                                                    {
                                                        "key": "type",
                                                        "operator": "NotIn",
                                                        "values": ["kwok"],
                                                    },
                                                    {
                                                        "key": CONTROL_PLANE,
                                                        "operator": "DoesNotExist",
                                                    },
                                                ]
                                            }
                                        ]
                                    }
                                }
                            },
                            "automountServiceAccountToken": False,
                            "enableServiceLinks": False,
                            # SIGTERM: the probe waits up to 25 s for its lookups in flight
                            "terminationGracePeriodSeconds": 30,
                            "containers": [
                                {
                                    "name": "probe",
                                    "image": image,
                                    "imagePullPolicy": "Never",
                                    "args": args,
                                    "env": env,
                                    "resources": {
                                        "requests": {"cpu": "10m", "memory": "16Mi"},
                                        "limits": {"memory": "128Mi"},
                                    },
                                    "securityContext": {
                                        "runAsNonRoot": True,
                                        "runAsUser": 65534,
                                        "allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                    },
                                }
                            ],
                        },
                    },
                },
            },
        ),
    ]


def real_workers(c: httpx.Client) -> list[str]:
    nodes = c.get("/api/v1/nodes").json()["items"]
    labels = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in nodes}
    return sorted(
        n for n, lb in labels.items() if lb.get("type") != "kwok" and CONTROL_PLANE not in lb
    )


def probe_pods(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get(f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": f"app={APP}"})
    return r.json()["items"] if r.status_code == 200 else []


def _running(pod: dict[str, Any]) -> bool:
    return (
        pod.get("status", {}).get("phase") == "Running"
        and pod["metadata"].get("deletionTimestamp") is None
    )


def deploy(
    cluster: Cluster,
    names: list[tuple[str, str, bool]],
    rate_hz: float,
    max_s: float,
    load_image: Callable[[str], None],
    log: Log = _quiet,
    timeout: float = 180,
) -> list[dict[str, Any]]:
    """Everything the probe pods need, then wait until one runs on every real worker."""
    ensure_offline_dns(cluster, log)
    image = probe_image(load_image, log)
    ds = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{APP}"
    with http_client(cluster) as c:
        # a DaemonSet left by an earlier run: its pods' logs are not this run's
        if c.delete(ds, params={"propagationPolicy": "Foreground"}).status_code == 200:
            until(
                lambda: c.get(ds).status_code == 404 and not probe_pods(c),
                "the previous DNS probe pods to go",
                timeout=timeout,
            )
        for collection, obj in manifests(image, names, rate_hz, max_s):
            if obj["kind"] == "DaemonSet":
                # pods cannot be created before the namespace's default ServiceAccount exists
                until(
                    lambda: (
                        c.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default").status_code
                        == 200
                    ),
                    "the probe namespace's default ServiceAccount",
                    timeout=60,
                )
            apply_object(c, collection, obj)
        workers = real_workers(c)
        if not workers:
            raise ClusterError("no real worker node for the DNS probe pods")

        def on_every_worker() -> list[dict[str, Any]] | None:
            pods = [p for p in probe_pods(c) if _running(p)]
            return pods if {p["spec"]["nodeName"] for p in pods} >= set(workers) else None

        pods = until(
            on_every_worker,
            f"DNS probe pods Running on {', '.join(workers)}",
            timeout=timeout,
            interval=1,
        )
    log(
        f"DNS probe pods running on {len(pods)} worker(s): "
        f"{', '.join(p['spec']['nodeName'] for p in pods)}"
    )
    return pods


def remove(cluster: Cluster) -> None:
    """Delete the DaemonSet (its pods finish their lookups in flight, then stop); the
    namespace and its Service stay for the next run."""
    with http_client(cluster) as c:
        c.delete(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{APP}",
            params={"propagationPolicy": "Background"},
        )


# --- the measurement -------------------------------------------------------------------------


class PodDnsProbe:
    """The `dns` measurement on kind: probe pods (the SLOs' view) and, beside them, the
    node-namespace probe (comparison and Service propagation)."""

    name = "dns"

    def __init__(
        self,
        cluster: Cluster,
        raw: Path,
        names: list[tuple[str, str, bool]],
        rate_hz: float,
        max_s: float,
        load_image: Callable[[str], None],
        node_probe: dns_m.DnsProbe | None = None,
        log: Log = _quiet,
    ) -> None:
        self.cluster = cluster
        self.load_image = load_image
        self.raw = raw
        self.names = names
        self.rate_hz = rate_hz
        self.max_s = max_s
        self.node_probe = node_probe
        self.log = log
        self.writer: JsonlWriter | None = None
        self.followers: dict[str, PodLogFollower] = {}
        self._nodes: dict[str, str] = {}
        self._seen: set[tuple[Any, ...]] = set()
        self._latest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._watch = Ticker(5.0, self._discover, "dns-pods-discover")

    def start(self) -> None:
        pods = deploy(self.cluster, self.names, self.rate_hz, self.max_s, self.load_image, self.log)
        self.writer = JsonlWriter(self.raw)
        self._follow(pods)
        self._watch.start()
        if self.node_probe:
            self.node_probe.start()

    def expect_propagation(self, name: str) -> None:
        if self.node_probe:
            self.node_probe.expect_propagation(name)

    def gather(self) -> dict[str, Any]:
        t_end = time.time()
        # the streams lag the pods by the API server's delivery: let them reach the end
        try:
            until(
                lambda: all(self._latest.get(p, 0) >= t_end - 1 for p in self.followers),
                "the probe pods' log streams to reach the end of the run",
                timeout=15,
            )
        except Exception as e:  # noqa: BLE001 - a stream that stays behind is reported below
            self.log(f"warning: {e}")
        self._watch.stop()
        remove(self.cluster)  # SIGTERM: lookups in flight finish (<= 25 s), a stop line
        deadline = time.monotonic() + 45
        for f in list(self.followers.values()):
            if not f.join(max(0.0, deadline - time.monotonic())):
                f.stop()
        assert self.writer is not None
        for pod, f in self.followers.items():
            self.writer.write(
                {
                    "event": "stream",
                    "pod": pod,
                    "node": self._nodes.get(pod),
                    "streams": f.streams,
                    "errors": f.errors,
                    "ended": "pod deleted" if f.gone else "stopped",
                }
            )
        self.writer.close()
        node = with_where(self.node_probe.gather(), self.cluster) if self.node_probe else None
        return summarize(read_jsonl(self.raw), node)

    def _discover(self) -> None:
        """Pods the DaemonSet replaced (a deleted pod, a node back) get followed too."""
        try:
            with http_client(self.cluster) as c:
                self._follow([p for p in probe_pods(c) if _running(p)])
        except httpx.HTTPError as e:
            self.log(f"warning: listing DNS probe pods: {type(e).__name__}: {e}")

    def _follow(self, pods: list[dict[str, Any]]) -> None:
        for p in pods:
            name = p["metadata"]["name"]
            if name in self.followers:
                continue
            self._nodes[name] = p["spec"]["nodeName"]

            def on_line(ts: str, text: str, pod: str = name) -> None:
                self._line(pod, text)

            f = PodLogFollower(self.cluster, NAMESPACE, name, on_line)
            self.followers[name] = f
            f.start()

    def _line(self, pod: str, text: str) -> None:
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            return
        if not isinstance(rec, dict):
            return
        key = (rec.get("i"), rec.get("k"), rec.get("event"), rec.get("t"))
        with self._lock:
            if key in self._seen:  # a resumed stream repeats up to a second of lines
                return
            self._seen.add(key)
            self._latest[pod] = max(
                self._latest.get(pod, 0.0), float(rec.get("sched") or rec.get("t") or 0)
            )
        assert self.writer is not None
        self.writer.write({**rec, "pod": pod, "node": self._nodes.get(pod)})


# --- the summary (pure) ----------------------------------------------------------------------


def slots(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every slot every probe process scheduled, in scheduled order: its record, or, when a
    process died with it in flight (or it was still in flight after the drain at the end),
    an `unrecorded` failure in its place. Each carries the fields the DNS summary reads."""
    procs: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("i") is None:
            continue
        p = procs.setdefault(r["i"], {"start": {}, "by_k": {}, "scheduled": 0})
        if r.get("event") == "start":
            p["start"] = r
        elif "scheduled" in r:  # tick, stop
            p["scheduled"] = max(p["scheduled"], int(r["scheduled"]))
        elif "k" in r:
            p["by_k"].setdefault(r["k"], r)
            p["scheduled"] = max(p["scheduled"], r["k"] + 1)
    out = []
    for i, p in procs.items():
        st = p["start"]
        timeout_ms = 1000 * float(st.get("timeout_s", 10.0))
        for k in range(p["scheduled"]):
            r = p["by_k"].get(k) or {
                "i": i,
                "k": k,
                "sched": st.get("t0", 0.0) + k / st.get("rate_hz", 1.0),
                "name": "?",
                "kind": "?",
                "expect": "?",
                "ms": None,
                "lag_ms": None,
                "cause": "unrecorded",
                "pod": st.get("pod"),
                "node": st.get("node"),
            }
            # what every DNS summary reads: "t", "error", an rcode, and a latency (a slot never
            # sent or never recorded counts at the lookup's timeout)
            out.append(
                {
                    **r,
                    "t": r["sched"],
                    "error": r["cause"] is not None,
                    "rcode": r.get("rcode") or r["cause"].upper(),
                    "ms": r["ms"] if r.get("ms") is not None else timeout_ms,
                }
            )
    out.sort(key=lambda r: r["sched"])
    return out


def summarize(records: list[dict[str, Any]], node: dict[str, Any] | None = None) -> dict[str, Any]:
    """The DNS summary of the pods' records (the fields every DNS summary has, from
    dns.summarize over the slots of every pod as one stream), plus where they ran, the
    resolver, queries per lookup by name kind, slots by outcome, each pod's restarts, lost
    slots and gaps, and the node-namespace probe's summary beside it."""
    every = slots(records)
    starts = [r for r in records if r.get("event") == "start"]
    base: dict[str, Any] = (
        dns_m.summarize(_stream(every, starts))
        if every
        else {"error": "no DNS lookup was recorded by the probe pods"}
    )
    out = {**base, "where": "pods", "where_detail": WHERE["pods"]}
    if starts:
        resolv = starts[0]["resolv"]
        out["resolver"] = {
            "ndots": resolv["ndots"],
            "search": resolv["search"],
            "nameservers": resolv["nameservers"],
            "timeout_s": resolv["timeout_s"],
            "attempts": resolv["attempts"],
            "same_in_every_pod": all(s["resolv"] == resolv for s in starts),
        }
        out["rate_hz_per_pod"] = starts[0].get("rate_hz")
    out["queries_per_lookup"] = _queries_per_lookup(every, starts)
    out["slots"] = _outcomes(every)
    out["pods"] = _pods(records, every)
    if node is not None:
        out["node_namespace"] = {
            "where": "node-namespace",
            "where_detail": WHERE["node-namespace"],
            **node,
        }
        # new Services are timed by the node-namespace probe (names given during the run)
        out["propagation"] = node.get("propagation", [])
        out["propagation_from"] = "node-namespace"
    return out


def _stream(every: list[dict[str, Any]], starts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slots of several processes as one probe stream for dns.summarize: renumbered in
    scheduled order, between one start and one stop."""
    timeout_s = max((float(s.get("timeout_s", 10.0)) for s in starts), default=10.0)
    head = {
        "event": "start",
        "t0": every[0]["sched"],
        "timeout_s": timeout_s,
        "rate_hz": sum(float(s.get("rate_hz", 0)) for s in starts) or 1.0,
        "workers": sum(int(s.get("workers", 0)) for s in starts),
    }
    return [
        head,
        *({**r, "k": k} for k, r in enumerate(every)),
        {"event": "stop", "scheduled": len(every)},
    ]


def _queries_per_lookup(
    every: list[dict[str, Any]], starts: list[dict[str, Any]]
) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in every:
        if r.get("lag_ms") is not None:  # sent
            by[r["kind"]].append(r)
    out = {}
    for kind, rs in sorted(by.items()):
        qs = [int(r.get("queries", 1)) for r in rs]
        ok = [int(r.get("queries", 1)) for r in rs if not r["error"]]
        lat = dns_m.summarize(_stream(rs, starts))  # the one DNS summary, for this kind
        out[kind] = {
            "name": rs[0]["name"],
            "lookups": len(rs),
            "mean": sum(qs) / len(qs),
            "max": max(qs),
            "mean_when_ok": sum(ok) / len(ok) if ok else None,
            "failed": sum(1 for r in rs if r["error"]),
            "p50_ms": lat.get("p50_ms"),
            "p99_ms": lat.get("p99_ms"),
        }
    return out


def _outcomes(every: list[dict[str, Any]]) -> dict[str, Any]:
    failed: dict[str, int] = defaultdict(int)
    for r in every:
        if r["error"]:
            failed[r["cause"]] += 1
    not_answered = ("timeout", "transport", "unsent", "unrecorded")
    return {
        "scheduled": len(every),
        "sent": sum(1 for r in every if r["cause"] not in ("unsent", "unrecorded")),
        "answered": sum(1 for r in every if r["cause"] not in not_answered),
        "failed": sum(failed.values()),
        "failed_by_cause": dict(sorted(failed.items())),
    }


def _pods(records: list[dict[str, Any]], every: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pod: its probe processes (a restarted container is a new one), slots scheduled,
    lost (scheduled, never recorded: in flight when a process died, or after the drain at
    the end), and the gaps between one process's last sign of life and the next one's
    start."""
    info: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("i") is None:
            continue
        p = info.setdefault(
            r["i"],
            {"pod": r.get("pod"), "node": r.get("node"), "start": None, "last": 0.0, "stop": None},
        )
        if r.get("event") == "start":
            p["start"] = r["t0"]
        if r.get("event") == "stop":
            p["stop"] = r
        p["last"] = max(p["last"], float(r.get("sched") or r.get("t") or 0))
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in every:
        per[r["i"]]["scheduled"] += 1
        per[r["i"]]["lost"] += r["cause"] == "unrecorded"
    streams = {r["pod"]: r for r in records if r.get("event") == "stream"}
    by_pod: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for i, p in info.items():
        by_pod[str(p["pod"])].append((i, p))
    out = []
    for pod, ps in sorted(by_pod.items()):
        ps.sort(key=lambda ip: ip[1]["start"] or ip[1]["last"])
        gaps = [
            round(b["start"] - a["last"], 3)
            for (_, a), (_, b) in zip(ps, ps[1:], strict=False)
            if b["start"] is not None
        ]
        stopped = ps[-1][1]["stop"]
        out.append(
            {
                "pod": pod,
                "node": ps[0][1]["node"],
                "processes": len(ps),
                "restarts": len(ps) - 1,
                "scheduled": sum(per[i]["scheduled"] for i, _ in ps),
                "lost": sum(per[i]["lost"] for i, _ in ps),
                "gaps_s": gaps,
                "stopped": stopped is not None,
                "in_flight_at_stop": stopped["inflight"] if stopped else None,
                "log_streams": streams.get(pod, {}).get("streams"),
                "stream_errors": streams.get(pod, {}).get("errors", []),
            }
        )
    return out


def with_where(summary: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    """A DNS summary that says where its probe ran (the node-side probe's does not know)."""
    if "where" not in summary:
        key = "node-namespace" if cluster.dns_via_container else "host"
        summary = {**summary, "where": key, "where_detail": WHERE[key]}
    return summary
