"""Running the agents: Locust headless as a child process, over the thin locustfiles.

Locust stays out of this process (no gevent monkey-patching in the harness); it gets the
Cluster handle as a file and writes its CSV/HTML and the agents' counters into `out_dir`.
With `workers`, that process is a Locust master bound to `master_bind` that waits for
that many `loadtest worker`s (other machines, namespaces, or pods started by a WorkerPool).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from loadtest.agents.profile import load_profile
from loadtest.clusters.base import Cluster
from loadtest.errors import CommandError, ConfigError
from loadtest.toolchain import REPO_ROOT

# An image or a wheel install names where the locustfiles are (they are not package data).
LOCUSTFILES = Path(os.environ.get("LOADTEST_LOCUSTFILES", REPO_ROOT / "locustfiles"))
Shape = Literal["fixed", "rollout", "steps"]


@dataclass(frozen=True)
class AgentRun:
    profile: str
    agents: int
    duration_s: float
    spawn_rate: float = 50.0
    shape: Shape = "fixed"
    steps: str = ""
    processes: int = 1
    node_selector: str = "type=kwok"
    decode: bool = False
    workers: int = 0  # remote workers the master waits for (0: none, a local run)
    master_bind: str = ""  # HOST:PORT the master listens on for them
    workers_wait_s: float = 120.0


class WorkerPool(Protocol):
    """Workers the harness starts itself (e.g. pods) once the master listens."""

    def start(self, master: str) -> None: ...

    def stop(self) -> None: ...


def split_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def locust_command(run: AgentRun, cluster_json: Path, out_dir: Path) -> list[str]:
    if run.agents < 1 or run.duration_s <= 0 or run.spawn_rate <= 0 or run.processes < 1:
        raise ConfigError("agents, duration, spawn rate and processes must be positive")
    if run.workers and run.processes > 1:
        raise ConfigError(
            "--workers and --processes exclude each other (run more `loadtest worker`s instead)"
        )
    if run.workers < 0 or (run.workers and not run.master_bind):
        raise ConfigError("--workers K needs --master-bind HOST:PORT (where workers connect)")
    load_profile(run.profile)  # a bad profile fails here, in one line, before Locust starts
    locustfile = (
        LOCUSTFILES
        / {"fixed": "agents.py", "rollout": "rollout.py", "steps": "steps.py"}[run.shape]
    )
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "-u",
        str(run.agents),
        "-r",
        str(run.spawn_rate),
        "-t",
        f"{int(run.duration_s)}s",
        "--stop-timeout",
        "1",
        "--csv",
        str(out_dir / "locust"),
        "--csv-full-history",
        "--html",
        str(out_dir / "locust.html"),
        "--only-summary",
        "--cluster-json",
        str(cluster_json),
        "--agent-profile",
        run.profile,
        "--node-selector",
        run.node_selector,
        "--agent-stats",
        str(out_dir / "agents.json"),
        "--loglevel",
        "WARNING",
    ]
    if run.shape == "rollout":
        cmd += ["--ramp-rate", str(run.spawn_rate)]
    if run.shape == "steps":
        cmd += ["--steps", run.steps]
    if run.decode:
        cmd.append("--decode")
    if run.processes > 1:
        cmd += ["--processes", str(run.processes)]
    if run.workers:
        host, port = split_host_port(run.master_bind)
        cmd += [
            "--master",
            "--master-bind-host",
            host,
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(run.workers),
            "--expect-workers-max-wait",
            str(int(run.workers_wait_s)),
        ]
    return cmd


def worker_command(master: str, api_server: str = "") -> list[str]:
    """`loadtest worker`: a Locust worker; everything else comes from the master.
    `api_server` "in-cluster" is the `kubernetes` Service as a pod's environment names it."""
    host, port = split_host_port(master)
    if api_server == "in-cluster":
        h, p = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not h or not p:
            raise ConfigError(
                "--api-server in-cluster: KUBERNETES_SERVICE_HOST/PORT not set (not in a pod?)"
            )
        api_server = f"https://{h}:{p}" if ":" not in h else f"https://[{h}]:{p}"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILES / "agents.py"),
        "--worker",
        "--master-host",
        host,
        "--master-port",
        str(port),
        "--loglevel",
        "WARNING",
    ]
    if api_server:
        cmd += ["--worker-api-server", api_server]
    return cmd


class LocalWorkers:
    """A WorkerPool of `loadtest worker` processes on this machine, each behind an optional
    command prefix (e.g. `ip netns exec NS` for a worker in another network namespace)."""

    def __init__(
        self, n: int, log_dir: Path, prefix: Sequence[str] = (), api_server: str = ""
    ) -> None:
        self.n, self.log_dir, self.prefix, self.api_server = n, log_dir, list(prefix), api_server
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, master: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*self.prefix, sys.executable, "-m", "loadtest.cli", "worker", "--master", master]
        if self.api_server:
            cmd += ["--api-server", self.api_server]
        for i in range(self.n):
            with (self.log_dir / f"worker-{i}.log").open("wb") as f:
                self.procs.append(
                    subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
                )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_agents(
    cluster: Cluster,
    run: AgentRun,
    out_dir: Path,
    log: Callable[[str], None],
    pool: WorkerPool | None = None,
) -> dict[str, object]:
    """Run Locust to completion (bounded by its -t) and return the agents' merged counters."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster_json = out_dir / "cluster.json"
    cluster_json.write_text(cluster.to_json())  # no token: to_json never writes it
    cmd = locust_command(run, cluster_json, out_dir)
    where = (
        f"{run.workers} worker(s) via {run.master_bind}"
        if run.workers
        else f"{run.processes} process(es)"
    )
    log(
        f"running {run.agents} {run.profile} agents for {run.duration_s:.0f}s "
        f"({run.shape}, {where})"
    )
    t0 = time.monotonic()
    logfile = out_dir / "locust.log"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT
    )
    killer = threading.Timer(run.duration_s + run.workers_wait_s + 180, proc.kill)
    killer.start()
    try:
        if pool is not None:
            pool.start(run.master_bind)
        with logfile.open("w") as logf:
            assert proc.stdout is not None
            for line in proc.stdout:  # Locust's log to the file, our progress lines forwarded
                logf.write(line)
                if line.startswith("loadtest: "):
                    log(line.removeprefix("loadtest: ").rstrip())
        rc = proc.wait()
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
        if pool is not None:
            pool.stop()
    text = logfile.read_text()
    if "Gave up waiting for workers" in text:
        raise CommandError(
            "locust",
            cmd,
            rc,
            f"fewer than {run.workers} workers connected to "
            f"{run.master_bind} in {run.workers_wait_s:.0f}s",
        )
    # Locust exits 1 when any request failed: that is a measurement, not a crash.
    if rc not in (0, 1) or not (out_dir / "locust_stats.csv").exists():
        raise CommandError("locust", cmd, rc, text[-4000:])
    log(f"agents done in {time.monotonic() - t0:.0f}s; Locust report in {out_dir}")
    return merge_agent_stats(out_dir)


def merge_agent_stats(out_dir: Path) -> dict[str, object]:
    """Sum the per-process counter files the Locust processes wrote."""
    total: dict[str, object] = {}
    for f in sorted(out_dir.glob("agents*.json")):
        if f.name == "agents.merged.json":
            continue
        add_counters(total, json.loads(f.read_text()))
    (out_dir / "agents.merged.json").write_text(json.dumps(total, indent=2))
    return total


def add_counters(into: dict[str, object], other: dict[str, object]) -> None:
    for k, v in other.items():
        if isinstance(v, dict):
            sub = into.setdefault(k, {})
            assert isinstance(sub, dict)
            add_counters(sub, v)
        elif isinstance(v, int | float):
            cur = into.get(k, 0)
            cur = cur if isinstance(cur, int | float) else 0
            # Percentiles of different processes do not add: keep the worst (an upper bound).
            into[k] = max(cur, v) if k in ("p50", "p99", "max") else cur + v
        else:  # lists and text (the workers lost) are not summed: the first one stands
            into.setdefault(k, v)
