"""`make bench-agents`: fidelity of the Python agents against client-go, and their cost.

One local cluster (bench-agents), one inventory (100 KWOK nodes x 5 pods: a 500-pod
cluster-wide list), then, one after another so they never compete for the 2 cores:

1. fidelity: the same profile and agent count run by our agents and by refagent; deltas of
   the API server's own metrics (requests by verb+resource, LIST response bytes, open
   watches mid-run) compared.
2. CPU per LIST of the 500-pod list: ours decoded and streamed; refagent (decodes typed).
3. scale: kubelet-like agents held by one generator process while pods churn (every pod's
   labels patched once a minute, so every agent sees events): steady-state CPU, RSS per
   1,000 agents, agents per core; the same for refagent; telemetry-v2 the same.
4. one Locust-driven figure (the runner's own command line).

    python benchmarks/bench_agents.py [--scale-agents 1000] [--parts fidelity,list,scale,v2,locust]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import yaml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from benchmarks.common import (  # noqa: E402
    create_cluster,
    delete_cluster,
    log,
    state_dir,
    table,
    write_result,
)
from loadtest import toolchain  # noqa: E402
from loadtest.agents.identity import NAMESPACE, SHARED_SA, ensure_rbac, request_token  # noqa: E402
from loadtest.agents.profile import load_profile  # noqa: E402
from loadtest.clusters.base import Cluster, http_client  # noqa: E402
from loadtest.config import InventorySpec  # noqa: E402
from loadtest.inventory.seed import Seeder, namespace_name, pod_name, pod_placement  # noqa: E402
from loadtest.measurements import host  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
RESOURCES = ("pods", "nodes", "services")
IMPERSONATE_FMT = f"system:serviceaccount:{NAMESPACE}:agent-%d"


# --- API server metrics ----------------------------------------------------------------------


def scrape(cluster: Cluster) -> dict[str, float]:
    """apiserver request counts, LIST response sizes and open watches, by verb+resource."""
    with http_client(cluster, timeout=30) as c:
        text = c.get("/metrics").text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name not in (
            "apiserver_request",
            "apiserver_response_sizes",
            "apiserver_longrunning_requests",
        ):
            continue
        for s in fam.samples:
            verb, res = s.labels.get("verb", ""), s.labels.get("resource", "")
            if res not in RESOURCES or s.labels.get("subresource"):
                continue
            if s.name == "apiserver_request_total" and verb in ("LIST", "WATCH"):
                key = f"requests {verb} {res}"
            elif s.name == "apiserver_response_sizes_sum" and verb == "LIST":
                key = f"bytes LIST {res}"
            elif s.name == "apiserver_longrunning_requests" and verb == "WATCH":
                key = f"open WATCH {res}"
            else:
                continue
            out[key] = out.get(key, 0.0) + s.value
    return out


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {
        k: b.get(k, 0.0) - a.get(k, 0.0)
        for k in sorted(set(a) | set(b))
        if not k.startswith("open ")
    }


# --- generators ------------------------------------------------------------------------------


class Generator:
    """One generator process (ours or refagent) with a CPU probe from /proc."""

    def __init__(self, cmd: list[str], out: Path, timeout: float) -> None:
        self.cmd, self.out, self.timeout = cmd, out, timeout
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(str(out) + ".log", "w"),  # noqa: SIM115
            cwd=toolchain.REPO_ROOT,
        )

    def cpu_rss(self) -> tuple[float, int]:
        s = host.sample(self.proc.pid, "gen")
        return (s.cpu_seconds, s.rss_bytes) if s else (0.0, 0)

    def wait(self) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
        return json.loads(self.out.read_text()) if self.out.exists() else {}


def ours(
    cluster_json: Path,
    profile: str,
    agents: int,
    steady: float,
    out: Path,
    ramp: float = 200,
    decode: bool = False,
    list_bench: int = 0,
) -> Generator:
    cmd = [
        PY,
        str(HERE / "agent_driver.py"),
        "--cluster-json",
        str(cluster_json),
        "--profile",
        profile,
        "--agents",
        str(agents),
        "--duration",
        str(steady),
        "--ramp-per-second",
        str(ramp),
        "--out",
        str(out),
    ]
    if decode:
        cmd.append("--decode")
    if list_bench:
        cmd += ["--list-bench", str(list_bench)]
    return Generator(cmd, out, timeout=steady + agents / ramp + 400)


def refagent(
    cluster: Cluster,
    profile: str,
    agents: int,
    seconds: float,
    out: Path,
    token_file: Path,
    ramp: float = 200,
) -> Generator:
    p = load_profile(profile)
    ident = (
        ["--impersonate", IMPERSONATE_FMT]
        if p.identity == "impersonate"
        else ["--token-file", str(token_file)]
    )
    cmd = [
        str(toolchain.bin_dir() / "refagent"),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--profile",
        profile,
        "--agents",
        str(agents),
        "--node-selector",
        "type=kwok",
        *ident,
        "--duration",
        f"{int(seconds)}s",
        "--ramp-per-second",
        str(ramp),
        "--poll-start",
        "random",
        "--stats",
        str(out),
        "--progress",
        "60s",
    ]
    return Generator(cmd, out, timeout=seconds + 120)


# --- pod churn -------------------------------------------------------------------------------


class Churn:
    """Patch every seeded pod's labels once per `period` seconds; bounded by stop()/max."""

    def __init__(
        self, cluster: Cluster, spec: InventorySpec, period: float = 60, max_seconds: float = 1800
    ) -> None:
        self.cluster, self.spec, self.period, self.max_seconds = cluster, spec, period, max_seconds
        self.stop_event = threading.Event()
        self.patches = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        pods = [
            (namespace_name(self.spec, pod_placement(self.spec, p)[1]), pod_name(self.spec, p))
            for p in range(self.spec.pods)
        ]
        gap = self.period / max(len(pods), 1)
        t_end = time.monotonic() + self.max_seconds
        n = 0
        with http_client(self.cluster, timeout=10) as c:
            while not self.stop_event.is_set() and time.monotonic() < t_end:
                ns, name = pods[n % len(pods)]
                try:
                    c.patch(
                        f"/api/v1/namespaces/{ns}/pods/{name}",
                        content=json.dumps({"metadata": {"labels": {"churn": str(n)}}}),
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                    self.patches += 1
                except httpx.HTTPError:
                    pass
                n += 1
                self.stop_event.wait(gap)


# --- the parts -------------------------------------------------------------------------------


def fidelity(
    cluster: Cluster, cj: Path, tmp: Path, token: Path, profile: str, agents: int, seconds: float
) -> dict[str, Any]:
    res: dict[str, Any] = {"profile": profile, "agents": agents, "seconds": seconds}
    for impl in ("ours", "refagent"):
        before = scrape(cluster)
        out = tmp / f"fid-{profile}-{impl}.json"
        # Both start all agents at once and run `seconds` from then.
        g = (
            ours(cj, profile, agents, seconds, out, ramp=10_000)
            if impl == "ours"
            else refagent(cluster, profile, agents, seconds, out, token, ramp=0)
        )
        time.sleep(seconds * 0.8)
        mid = scrape(cluster)
        g.wait()
        time.sleep(2)
        d = delta(before, scrape(cluster))
        d |= {k: v for k, v in mid.items() if k.startswith("open ")}
        res[impl] = d
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fidelity-agents", type=int, default=100)
    ap.add_argument("--fidelity-seconds", type=float, default=60)
    ap.add_argument("--fidelity-profiles", default="kubelet-like,telemetry-v2")
    ap.add_argument("--scale-agents", type=int, default=1000)
    ap.add_argument("--ref-scale-agents", type=int, default=1000)
    ap.add_argument("--v2-agents", type=int, default=200)
    ap.add_argument("--steady", type=float, default=60)
    ap.add_argument("--lists", type=int, default=20)
    ap.add_argument("--locust-agents", type=int, default=500)
    ap.add_argument("--parts", default="fidelity,list,scale,v2,locust")
    a = ap.parse_args(argv)
    parts = set(a.parts.split(","))

    name = "bench-agents"
    spec = InventorySpec(name="bench", nodes=100, pods_per_node=5, namespaces=10)
    load0 = os.getloadavg()
    result: dict[str, Any] = {"inventory": spec.model_dump(), "load_average_before": load0}
    create_cluster(name, kwokctl_flags=["--disable", "kube-scheduler"])
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as td:
        tmp = Path(td)
        try:
            from loadtest.clusters.local import LocalProvider

            cluster = LocalProvider().get(name)
            assert cluster is not None
            cj = tmp / "cluster.json"
            cj.write_text(cluster.to_json())
            seeder = Seeder(cluster, spec, log=log, progress=False)
            seeder.seed()
            seeder.wait_ready(timeout=300)
            for prof in ("kubelet-like", "telemetry-v2"):
                ensure_rbac(cluster, load_profile(prof))
            token = tmp / "token"  # the shared SA token; deleted with tmp, never reported
            token.write_text(request_token(cluster, SHARED_SA))
            token.chmod(0o600)
            cpids = host.cluster_pids(state_dir(name))
            run_parts(result, parts, a, cluster, cj, tmp, token, spec, cpids)
        finally:
            delete_cluster(name)
    result["load_average_after"] = os.getloadavg()
    report(result)
    write_result("bench-agents", result)
    return 0


def run_parts(
    r: dict[str, Any],
    parts: set[str],
    a: argparse.Namespace,
    cluster: Cluster,
    cj: Path,
    tmp: Path,
    token: Path,
    spec: InventorySpec,
    cpids: dict[int, str],
) -> None:
    """Each part in turn; a failing part is recorded and the others still run."""
    steps: list[tuple[str, Any]] = [
        # telemetry-v2 polls every 60 s +-20% from a random start: a window of two intervals
        # or more keeps the count noise of the last partial interval small.
        (
            "fidelity",
            lambda: [
                fidelity(
                    cluster,
                    cj,
                    tmp,
                    token,
                    p,
                    a.fidelity_agents,
                    a.fidelity_seconds if p == "kubelet-like" else max(a.fidelity_seconds, 130),
                )
                for p in a.fidelity_profiles.split(",")
            ],
        ),
        ("list", lambda: list_cpu(cluster, cj, tmp, token, a.lists)),
        (
            "scale",
            lambda: [
                scale(
                    cluster,
                    cj,
                    tmp,
                    token,
                    spec,
                    cpids,
                    "ours",
                    "kubelet-like",
                    a.scale_agents,
                    a.steady,
                ),
                scale(
                    cluster,
                    cj,
                    tmp,
                    token,
                    spec,
                    cpids,
                    "refagent",
                    "kubelet-like",
                    a.ref_scale_agents,
                    a.steady,
                ),
            ],
        ),
        (
            "v2",
            lambda: [
                scale(
                    cluster,
                    cj,
                    tmp,
                    token,
                    spec,
                    cpids,
                    impl,
                    "telemetry-v2",
                    a.v2_agents,
                    max(a.steady, 90),
                )
                for impl in ("ours", "refagent")
            ],
        ),
        ("locust", lambda: locust_figure(cluster, spec, cj, tmp, a.locust_agents, a.steady)),
    ]
    keys = {"list": "list_cpu"}
    for part, fn in steps:
        if part not in parts:
            continue
        log(f"part {part}; load {os.getloadavg()}")
        try:
            r[keys.get(part, part)] = fn()
        except Exception as e:  # noqa: BLE001 - a benchmark reports what it could measure
            log(f"part {part} failed: {type(e).__name__}: {e}")
            r.setdefault("errors", {})[part] = f"{type(e).__name__}: {e}"


def list_profile(tmp: Path, interval: float) -> Path:
    """A profile that only LISTs the 500 pods cluster-wide from the watch cache, unpaged."""
    p = tmp / "list500.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "list500",
                "user_agent": "bench/list500",
                "identity": "shared-serviceaccount",
                "polls": [
                    {
                        "resource": "pods",
                        "scope": "cluster",
                        "interval_seconds": interval,
                        "jitter": 0.0,
                        "list_resource_version": "0",
                        "page_size": 0,
                    }
                ],
            }
        )
    )
    return p


def list_cpu(cluster: Cluster, cj: Path, tmp: Path, token: Path, lists: int) -> dict[str, Any]:
    prof = str(list_profile(tmp, 1.0))
    out: dict[str, Any] = {}
    for decode in (False, True):
        o = tmp / f"list-{decode}.json"
        ours(cj, prof, 1, 0, o, decode=decode, list_bench=lists).wait()
        out["ours_decoded" if decode else "ours_streamed"] = json.loads(o.read_text())
    # refagent: 5 agents polling every second for 30 s; CPU per request from its own rusage.
    o = tmp / "list-ref.json"
    refagent(cluster, prof, 5, 30, o, token, ramp=0).wait()
    ref = json.loads(o.read_text())
    out["refagent_decoded"] = {
        k: ref.get(k)
        for k in ("cpu_seconds", "cpu_ms_per_request", "requests_by_verb", "max_rss_bytes")
    }
    return out


def scale(
    cluster: Cluster,
    cj: Path,
    tmp: Path,
    token: Path,
    spec: InventorySpec,
    cpids: dict[int, str],
    impl: str,
    profile: str,
    agents: int,
    steady: float,
) -> dict[str, Any]:
    """Steady-state generator CPU with events flowing; also the control plane's CPU."""
    o = tmp / f"scale-{impl}-{profile}-{agents}.json"
    ramp = 200.0
    ramp_s = agents / ramp + 20  # ramp, then time for initial LISTs to finish
    load0 = os.getloadavg()
    with Churn(cluster, spec) as churn:
        if impl == "ours":
            g = ours(cj, profile, agents, steady, o, ramp=ramp)
            res = g.wait()
            res["generator"] = "python agents (gevent, agent_driver.py)"
        else:
            g = refagent(cluster, profile, agents, ramp_s + steady, o, token, ramp=ramp)
            time.sleep(ramp_s)
            c0, t0 = g.cpu_rss()[0], time.monotonic()
            cp0 = host.snapshot(cpids)
            time.sleep(steady - 2)
            c1, rss = g.cpu_rss()
            t1 = time.monotonic()
            cp1 = host.snapshot(cpids)
            ref = g.wait()
            res = {
                "agents": agents,
                "generator": "refagent (client-go)",
                "steady": {
                    "seconds": t1 - t0,
                    "cpu_seconds": c1 - c0,
                    "cpu_fraction": (c1 - c0) / (t1 - t0),
                },
                "rss_bytes_end": rss,
                "max_rss_bytes": ref.get("max_rss_bytes"),
                "requests_total": sum((ref.get("requests_by_verb") or {}).values()),
                "cpu_seconds_total": ref.get("cpu_seconds"),
                "control_plane_cpu_steady": host.cpu_delta(cp0, cp1),
            }
        res["churn_patches"] = churn.patches
    st = res.get("steady", {})
    frac = st.get("cpu_fraction") or 0.0
    res |= {
        "impl": impl,
        "profile": profile,
        "load_average_before": load0,
        "load_average_after": os.getloadavg(),
        "agents_per_core": round(agents / frac) if frac else None,
        "rss_mib_per_1000_agents": round(
            (res.get("rss_bytes_end") or 0) / (1 << 20) * 1000 / agents, 1
        ),
        "cpu_ms_per_request": round(
            1000 * (res.get("cpu_seconds_total") or 0) / max(res.get("requests_total") or 1, 1), 3
        ),
    }
    res.pop("stats", None)
    return res


def locust_figure(
    cluster: Cluster, spec: InventorySpec, cj: Path, tmp: Path, agents: int, seconds: float
) -> dict[str, Any]:
    """The same agents under Locust (the runner's command): CPU of the Locust process."""
    from loadtest.agents.runner import AgentRun, locust_command

    run = AgentRun(profile="kubelet-like", agents=agents, duration_s=seconds + 30, spawn_rate=200)
    d = tmp / "locust"
    d.mkdir()
    with Churn(cluster, spec) as churn:
        g = Generator(locust_command(run, cj, d), d / "agents.json", timeout=seconds + 200)
        time.sleep(agents / 200 + 20)
        c0, t0 = g.cpu_rss()[0], time.monotonic()
        time.sleep(seconds - 5)
        c1, rss = g.cpu_rss()
        t1 = time.monotonic()
        g.wait()
    merged = {}
    for f in d.glob("agents*.json"):
        merged = json.loads(f.read_text())
    frac = (c1 - c0) / (t1 - t0)
    return {
        "agents": agents,
        "steady_cpu_fraction": round(frac, 4),
        "agents_per_core": round(agents / frac) if frac else None,
        "rss_mib": round(rss / (1 << 20), 1),
        "agents_synced": merged.get("agents_synced"),
        "events": merged.get("events"),
        "churn_patches": churn.patches,
        "note": "few agents: the process's fixed cost dominates RSS per agent",
    }


def report(r: dict[str, Any]) -> None:
    for f in r.get("fidelity", []):
        keys = sorted(set(f["ours"]) | set(f["refagent"]))
        rows = []
        for k in keys:
            o, c = f["ours"].get(k, 0.0), f["refagent"].get(k, 0.0)
            if o == 0 and c == 0:
                continue
            rows.append([k, int(o), int(c), f"{(o - c) / c * 100:+.1f}%" if c else "n/a"])
        print(
            f"\nfidelity: {f['profile']}, {f['agents']} agents, {f['seconds']:.0f}s "
            "(API server metric deltas; open WATCH sampled mid-run)"
        )
        print(table(rows, ["metric", "ours", "client-go", "diff"]))
    if lc := r.get("list_cpu"):
        print("\ngenerator CPU per LIST of 500 pods (RV=0, unpaged, gzip):")
        print(
            table(
                [
                    ["ours streamed", lc["ours_streamed"]["cpu_ms_per_list"]],
                    ["ours decoded", lc["ours_decoded"]["cpu_ms_per_list"]],
                    ["client-go decoded", lc["refagent_decoded"]["cpu_ms_per_request"]],
                ],
                ["generator", "CPU ms/LIST"],
            )
        )
    rows = [
        [
            s["impl"],
            s["profile"],
            s["agents"],
            s.get("steady", {}).get("cpu_fraction", 0.0),
            s["agents_per_core"],
            s["rss_mib_per_1000_agents"],
            s["cpu_ms_per_request"],
            s.get("churn_patches", 0),
        ]
        for s in [*r.get("scale", []), *r.get("v2", [])]
    ]
    if rows:
        print("\ngenerator steady state with pods churning (every pod patched once a minute):")
        print(
            table(
                rows,
                [
                    "generator",
                    "profile",
                    "agents",
                    "CPU (cores)",
                    "agents/core",
                    "RSS MiB/1k",
                    "CPU ms/req (all)",
                    "patches",
                ],
            )
        )
    if lc := r.get("locust"):
        print(
            f"\nLocust ({lc['agents']} kubelet-like agents, pods churning): "
            f"{lc['steady_cpu_fraction']} cores steady, {lc['agents_per_core']} agents/core, "
            f"RSS {lc['rss_mib']} MiB, events {lc['events']}"
        )


if __name__ == "__main__":
    sys.exit(main())
