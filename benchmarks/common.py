"""What every benchmark shares: the environment record, result files, tables, clusters.

Benchmarks are scripts (not tests): each prints a table and writes
results/bench/<name>-<timestamp>.json with the environment and the exact command.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from loadtest import toolchain
from loadtest.clusters import local
from loadtest.clusters.base import Cluster
from loadtest.results import environment

RESULTS = toolchain.REPO_ROOT / "results" / "bench"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    doc = {
        "benchmark": name,
        "command": shlex.join([sys.executable, *sys.argv]),
        "environment": environment(),
        **payload,
    }
    out.write_text(json.dumps(doc, indent=2, default=str))
    log(f"wrote {out}")
    return out


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:,.3f}" if abs(c) < 10 else f"{c:,.1f}"
    if isinstance(c, int):
        return f"{c:,}"
    return str(c)


@contextlib.contextmanager
def kwokctl_extra_flags(
    flags: list[str], kwok_options: dict[str, Any] | None = None
) -> Iterator[None]:
    """Add flags to `kwokctl create cluster` (e.g. --disable kube-scheduler) and a
    KwokConfiguration (e.g. podPlayStageParallelism) to its config, for one create.

    The provider has no such options (its owner is changing it); the benchmark wraps the
    one command it runs instead of forking the provider.
    """
    orig = local.run

    def run(cmd: list[Any], *a: Any, **k: Any) -> Any:
        argv = [str(x) for x in cmd]
        if argv[3:5] == ["create", "cluster"]:
            cmd = [*cmd, *flags]
            if kwok_options and "--config" in argv:
                conf = Path(argv[argv.index("--config") + 1])
                doc = {
                    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                    "kind": "KwokConfiguration",
                    "options": kwok_options,
                }
                conf.write_text(conf.read_text() + "---\n" + yaml.safe_dump(doc))
        return orig(cmd, *a, **k)

    local.run = run  # type: ignore[assignment]
    try:
        yield
    finally:
        local.run = orig


def create_cluster(
    name: str,
    apiserver_args: dict[str, str] | None = None,
    kwokctl_flags: list[str] | None = None,
    feature_gates: str = "",
    kwok_options: dict[str, Any] | None = None,
) -> Cluster:
    provider = local.LocalProvider(
        log=log, apiserver_args=apiserver_args or {}, feature_gates=feature_gates
    )
    if provider.get(name) is not None:
        log(f"removing leftover cluster {name!r}")
        provider.delete(name)
    with kwokctl_extra_flags(kwokctl_flags or [], kwok_options):
        return provider.create(name)


def delete_cluster(name: str) -> None:
    local.LocalProvider(log=log).delete(name)


def state_dir(name: str) -> Path:
    return local.state_root() / name
