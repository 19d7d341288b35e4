"""Running the agents: Locust headless as a child process, over the thin locustfiles.

Locust stays out of this process (no gevent monkey-patching in the harness); it gets the
Cluster handle as a file and writes its CSV/HTML and the agents' counters into `out_dir`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loadtest.agents.profile import load_profile
from loadtest.clusters.base import Cluster
from loadtest.errors import CommandError, ConfigError
from loadtest.toolchain import REPO_ROOT

LOCUSTFILES = REPO_ROOT / "locustfiles"
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


def locust_command(run: AgentRun, cluster_json: Path, out_dir: Path) -> list[str]:
    if run.agents < 1 or run.duration_s <= 0 or run.spawn_rate <= 0 or run.processes < 1:
        raise ConfigError("agents, duration, spawn rate and processes must be positive")
    load_profile(run.profile)  # a bad profile fails here, in one line, before Locust starts
    locustfile = LOCUSTFILES / {"fixed": "agents.py", "rollout": "rollout.py",
                                "steps": "steps.py"}[run.shape]
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
           "-u", str(run.agents), "-r", str(run.spawn_rate), "-t", f"{int(run.duration_s)}s",
           "--stop-timeout", "1", "--csv", str(out_dir / "locust"), "--csv-full-history",
           "--html", str(out_dir / "locust.html"), "--only-summary",
           "--cluster-json", str(cluster_json), "--agent-profile", run.profile,
           "--node-selector", run.node_selector, "--agent-stats", str(out_dir / "agents.json"),
           "--loglevel", "WARNING"]
    if run.shape == "rollout":
        cmd += ["--ramp-rate", str(run.spawn_rate)]
    if run.shape == "steps":
        cmd += ["--steps", run.steps]
    if run.decode:
        cmd.append("--decode")
    if run.processes > 1:
        cmd += ["--processes", str(run.processes)]
    return cmd


def run_agents(cluster: Cluster, run: AgentRun, out_dir: Path,
               log: Callable[[str], None]) -> dict[str, object]:
    """Run Locust to completion (bounded by its -t) and return the agents' merged counters."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster_json = out_dir / "cluster.json"
    cluster_json.write_text(cluster.to_json())  # no token: to_json never writes it
    cmd = locust_command(run, cluster_json, out_dir)
    log(f"running {run.agents} {run.profile} agents for {run.duration_s:.0f}s "
        f"({run.shape}, {run.processes} process(es))")
    t0 = time.monotonic()
    with (out_dir / "locust.log").open("w") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT,
                              timeout=run.duration_s + 180, cwd=REPO_ROOT)
    # Locust exits 1 when any request failed: that is a measurement, not a crash.
    if proc.returncode not in (0, 1) or not (out_dir / "locust_stats.csv").exists():
        raise CommandError("locust", cmd, proc.returncode,
                           (out_dir / "locust.log").read_text()[-4000:])
    log(f"agents done in {time.monotonic() - t0:.0f}s; Locust report in {out_dir}")
    return merge_agent_stats(out_dir)


def merge_agent_stats(out_dir: Path) -> dict[str, object]:
    """Sum the per-process counter files the Locust processes wrote."""
    total: dict[str, object] = {}
    for f in sorted(out_dir.glob("agents*.json")):
        if f.name == "agents.merged.json":
            continue
        _add(total, json.loads(f.read_text()))
    (out_dir / "agents.merged.json").write_text(json.dumps(total, indent=2))
    return total


def _add(into: dict[str, object], other: dict[str, object]) -> None:
    for k, v in other.items():
        if isinstance(v, dict):
            sub = into.setdefault(k, {})
            assert isinstance(sub, dict)
            _add(sub, v)
        elif isinstance(v, int | float):
            cur = into.get(k, 0)
            cur = cur if isinstance(cur, int | float) else 0
            # Percentiles of different processes do not add: keep the worst (an upper bound).
            into[k] = max(cur, v) if k in ("p50", "p99", "max") else cur + v
