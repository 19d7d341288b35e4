"""The incident replay, end to end: telemetry-v2 passes on 10 nodes and breaks the control
plane at production scale (a thousand KWOK nodes, one agent per node), and the report names
the cause. Runs `make incident`'s command on its own cluster and removes it afterwards.

Always on the local provider: its API server gets a control plane's memory budget (2 GiB,
about twice its resident set with this inventory and no agents; it starts inside it), and
the LIST storm ends as it did in production: OOM-killed API server, then a CoreDNS that
restarts and cannot sync.
Without a budget (kind here, or this machine's 24 GiB) APF sheds the agents' excess and
CoreDNS, in workload-high, keeps resolving: the API SLOs break, DNS does not.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.clusters import get_provider

pytestmark = pytest.mark.e2e

NAME = "loadtest-incident"
LARGE = 1000


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("the API server's memory budget is a cgroup: needs root")
    provider = "local"
    out = tmp_path_factory.mktemp("incident")
    cmd = [
        sys.executable,
        "-m",
        "loadtest.cli.main",
        "incident",
        "--provider",
        provider,
        "--name",
        NAME,
        "--out",
        str(out),
        "--profile",
        "telemetry-v2",
        "--small",
        "10",
        "--between",
        "100",
        "--large",
        str(LARGE),
        "--pods-per-node",
        "3",
        "--duration",
        "60",
        "--propagation",
        "--restart-dns-at",
        "45",
        "--apiserver-memory",
        "2Gi",
    ]
    try:
        rc = subprocess.run(cmd, timeout=40 * 60).returncode
    finally:
        get_provider(provider).delete(NAME)
    (sweep_dir,) = out.glob("*-incident-telemetry-v2")
    return rc, json.loads((sweep_dir / "sweep.json").read_text()), sweep_dir


def test_passes_small_and_breaks_api_and_dns_at_production_scale(incident):
    rc, sweep, _ = incident
    small, large = sweep["points"][0], sweep["points"][-1]
    assert [p["nodes"] for p in sweep["points"]] == [10, 100, LARGE]
    assert small["verdict"] == "pass", small["failed_slos"]
    assert large["verdict"] == "fail"
    assert any(s.startswith("api-") for s in large["failed_slos"]), large["failed_slos"]
    # DNS breaks once the API server is gone: say how its memory went if it did not
    memory = {
        k: v
        for k, v in json.loads((Path(large["run_dir"]) / "summary.json").read_text())[
            "cluster"
        ].items()
        if "memory" in k or "oom" in k
    }
    assert any(s.startswith("dns-") for s in large["failed_slos"]), (large["failed_slos"], memory)
    assert rc == 0  # `make incident` says "reproduced"


def test_report_names_requests_identity_and_growth(incident):
    _, sweep, sweep_dir = incident
    text = (sweep_dir / "report.html").read_text()
    assert "LIST pods scope=cluster" in text  # which requests
    assert "telemetry-agent/2.0.0" in text and "shared-serviceaccount" in text  # who
    # how cost grew (10 -> 100 nodes), and why 1,000 is no point of the cost law
    assert "at 10 nodes -&gt; " in text and "at 100 nodes (x" in text
    assert f"at {LARGE} nodes: the API server stopped answering" in text
    large_run = Path(sweep["points"][-1]["run_dir"])
    assert (large_run / "report.html").exists() and (large_run / "summary.json").exists()
