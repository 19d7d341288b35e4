"""What every `loadtest` command module shares: the log line, the cluster-target arguments
and the provider factory they feed. main.py and the command modules beside it (gate,
learn, breakpoint; runs for those that make measured runs) import this; it imports none of
them, so no command module imports another."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtest.clusters import PROVIDERS, cgroups, get_provider, require_load_allowed
from loadtest.clusters.base import Cluster, ClusterProvider
from loadtest.errors import ClusterError, LoadtestError


def log(msg: str) -> None:
    print(f"loadtest: {msg}", file=sys.stderr, flush=True)


def _memory(args: argparse.Namespace) -> int | None:
    text = getattr(args, "apiserver_memory", None)
    return cgroups.parse_bytes(text) if text else None


def make_provider(args: argparse.Namespace) -> ClusterProvider:
    memory = _memory(args)
    cpu = getattr(args, "apiserver_cpu", None)
    # what both providers that make clusters take
    made = {
        "log": log,
        "apiserver_port": args.port,
        "apiserver_args": dict(args.apiserver_arg or []),
        "feature_gates": args.feature_gates,
    }
    if args.provider == "local":
        return get_provider(
            "local",
            **made,
            apiserver_memory=memory,
            apiserver_cpu=cgroups.parse_cores(cpu) if cpu else None,
        )
    if cpu:
        raise LoadtestError("--apiserver-cpu: only the local provider limits the API server's CPU")
    if args.provider == "kind":
        return get_provider("kind", **made, apiserver_memory=memory)
    if memory:
        raise LoadtestError(
            "--apiserver-memory: only the local and kind providers limit the API server's memory"
        )
    if args.provider == "existing":
        return get_provider("existing", kubeconfig_path=args.kubeconfig)
    return get_provider(args.provider)


def no_such_cluster(provider: ClusterProvider, name: str) -> ClusterError:
    if provider.name == "existing":
        return ClusterError(
            f"no context {name!r} in the kubeconfig (--kubeconfig, "
            "$KUBECONFIG or ~/.kube/config; --name picks the context)"
        )
    return ClusterError(
        f"no {provider.name} cluster named {name!r} (create one with: "
        f"loadtest cluster up --provider {provider.name} --name {name})"
    )


def target_cluster(args: argparse.Namespace) -> Cluster:
    """The cluster a command sends load to: it must exist, and be ours unless opted in."""
    provider = make_provider(args)
    cluster = provider.get(args.name)
    if cluster is None:
        raise no_such_cluster(provider, args.name)
    require_load_allowed(cluster, allow_existing=args.allow_existing_cluster)
    return cluster


def check_target(args: argparse.Namespace) -> None:
    """Before a run starts or writes anything: the kubeconfig reads, and a cluster the
    provider cannot create (existing) is there and may take load. Others may be absent:
    the run creates them."""
    provider = make_provider(args)
    cluster = provider.get(args.name)
    if cluster is None and provider.name == "existing":
        raise no_such_cluster(provider, args.name)
    if cluster is not None:
        require_load_allowed(cluster, allow_existing=args.allow_existing_cluster)


def cluster_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provider", choices=PROVIDERS, default="local")
    p.add_argument("--name", default="loadtest", help="cluster name (existing: context)")
    p.add_argument("--kubeconfig", type=Path, help="existing: kubeconfig (default $KUBECONFIG)")
    p.add_argument(
        "--allow-existing-cluster",
        action="store_true",
        help="allow load on a cluster loadtest did not create",
    )
    memory_arg(p)
    p.set_defaults(port=None, apiserver_arg=None, feature_gates="")


def memory_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--apiserver-memory",
        metavar="SIZE",
        help="local, kind: the API server's memory budget, e.g. 2Gi (a control plane's "
        "size; beyond it the kernel's OOM killer acts, as in production; on kind a limit on "
        "each API server's static pod, which kubelet restarts)",
    )
    p.add_argument(
        "--apiserver-cpu",
        metavar="CORES",
        help="local: the API server's CPU quota in cores, e.g. 0.5 (cgroup cpu.max)",
    )
