"""The `loadtest` command: a thin layer over the package, and the only place that exits."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from loadtest import config, toolchain
from loadtest.cli import breakpoint as cli_breakpoint
from loadtest.cli import gate as cli_gate
from loadtest.cli import learn as cli_learn
from loadtest.cli.common import (
    check_target,
    cluster_target_args,
    log,
    make_provider,
    memory_arg,
    target_cluster,
)
from loadtest.clusters import PROVIDERS
from loadtest.clusters.base import Cluster
from loadtest.config import InventorySpec
from loadtest.errors import ClusterError, CommandError, ConfigError, LoadtestError
from loadtest.inventory.seed import Seeder
from loadtest.run.job import MainJob, RunConfig, rebuild_summary, run_verdict_pytest


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def cmd_tools(args: argparse.Namespace) -> int:
    if args.action == "build":
        toolchain.build(args.names or None, force=args.force)
    else:
        for name, version, ok in toolchain.status():
            print(f"{name:12} {version:10} {'built' if ok else 'not built (run `make tools`)'}")
        if args.versions:
            for name, line in toolchain.reported_versions().items():
                print(f"{name:12} reports: {line}")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    provider = make_provider(args)
    if args.action == "up":
        existing = provider.get(args.name)
        if existing is not None and args.reuse:
            log(f"reusing {provider.name} cluster {args.name!r}")
            cluster = existing
        else:
            cluster = provider.create(args.name)
        _print_cluster(cluster)
    elif args.action == "down":
        if provider.get(args.name) is None:
            log(f"no {provider.name} cluster named {args.name!r}; nothing to do")
        provider.delete(args.name)
    elif args.action == "list":
        for name in provider.list():
            print(name)
    elif args.action == "info":
        found = provider.get(args.name)
        if found is None:
            raise ClusterError(f"no {provider.name} cluster named {args.name!r}")
        _print_cluster(found)
    return 0


def _print_cluster(cluster: Cluster) -> None:
    print(json.dumps(cluster.redacted(), indent=2))


SPEC_FLAGS = (
    "nodes",
    "pods_per_node",
    "namespaces",
    "services_per_namespace",
    "configmaps_per_namespace",
    "pod_bytes",
    "node_bytes",
)


def _file_then_flags(
    model: type[config.M], path: Path | None, args: argparse.Namespace, flags: tuple[str, ...]
) -> dict[str, object]:
    """A config file's fields (validated), with the flags that were given laid over them."""
    base: dict[str, object] = config.load(model, path).model_dump() if path else {}
    base.update({f: getattr(args, f) for f in flags if getattr(args, f) is not None})
    return base


def inventory_spec(args: argparse.Namespace) -> InventorySpec:
    """The inventory from --file, with any flags given overriding it; validated at the edge."""
    base = _file_then_flags(InventorySpec, args.file, args, SPEC_FLAGS)
    if args.inventory:
        base["name"] = args.inventory
    return config.parse(InventorySpec, base, str(args.file or "flags"))


def cmd_seed(args: argparse.Namespace) -> int:
    spec = inventory_spec(args)
    cluster = target_cluster(args)
    seeder = Seeder(cluster, spec, concurrency=args.concurrency, log=log)
    if args.delete:
        from loadtest.measurements import probe_service

        before = seeder.delete()
        log(f"deleted inventory {spec.name!r} (had {before})")
        probes = probe_service.delete_all(cluster)
        log(f"deleted {len(probes)} probe Service(s) runs left ({probe_service.LABEL}=true)")
        return 0
    result = seeder.seed()
    rate = result.total_created / result.seconds if result.seconds else 0.0
    log(
        f"created {result.created} in {result.seconds:.1f}s ({rate:.0f} objects/s); "
        f"already there: {result.existing}"
    )
    if args.wait:
        log(f"KWOK: {seeder.wait_ready(timeout=args.wait)}")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from loadtest.agents.runner import AgentRun, run_agents

    run = AgentRun(
        profile=args.profile,
        agents=args.agents,
        duration_s=args.duration,
        spawn_rate=args.spawn_rate,
        shape=args.shape,
        steps=args.steps,
        processes=args.processes,
        node_selector=args.node_selector,
        decode=args.decode,
        workers=args.workers or 0,
        master_bind=args.master_bind or "",
    )
    cluster = target_cluster(args)
    pool = None
    if args.workers_in_cluster:
        from loadtest.agents.pods import in_cluster_workers

        run, pool = in_cluster_workers(
            cluster, run, args.workers_in_cluster, args.worker_image, log
        )
    stats = run_agents(cluster, run, args.out, log, pool)
    print(json.dumps(stats, indent=2))
    return 0


RUN_FLAGS = (
    "profile",
    "agents",
    "duration_s",
    "spawn_rate",
    "shape",
    "steps",
    "processes",
    "slo_file",
    "restart_dns_at_s",
    "workers",
    "master_bind",
    "workers_in_cluster",
    "worker_image",
)


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    from loadtest.agents.runner import worker_command

    cmd = worker_command(args.master, args.api_server)
    log(f"worker for the master at {args.master}")
    os.execv(cmd[0], cmd)  # the worker is Locust's own process (signals, exit code)


def _workers_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote workers")
    g.add_argument("--workers", type=int, help="run the agents on K `loadtest worker`s")
    g.add_argument("--master-bind", help="HOST:PORT the Locust master listens on for them")
    g.add_argument(
        "--workers-in-cluster",
        type=int,
        metavar="N",
        help="run N worker pods in the cluster under test",
    )
    g.add_argument("--worker-image", help="their image (default: built and kind-loaded here)")


def run_config(args: argparse.Namespace) -> RunConfig:
    """RunConfig from --config, with flags overriding; validated at the edge."""
    base = _file_then_flags(RunConfig, args.config, args, RUN_FLAGS)
    inv = dict(base.get("inventory") or {})  # type: ignore[call-overload]
    for f in ("nodes", "pods_per_node"):
        if getattr(args, f) is not None:
            inv[f] = getattr(args, f)
    if inv:
        base["inventory"] = inv
    return config.parse(RunConfig, base, str(args.config or "flags"))


def cmd_run(args: argparse.Namespace) -> int:
    cfg = run_config(args)
    check_target(args)
    job = MainJob(
        make_provider(args),
        args.name,
        cfg,
        args.out,
        log,
        keep_cluster=not args.delete_cluster,
        allow_existing=args.allow_existing_cluster,
    )
    run_dir = job.execute()
    log(f"verdict: {job.summary.get('verdict')} (pytest: one test per SLO)")
    # by the SLOs the job resolved and recorded at its start, the ones its summary used
    # (reading cfg.slo_file again could disagree if the file changed during the run)
    return run_verdict_pytest(run_dir)


def cmd_mitigate(args: argparse.Namespace) -> int:
    from loadtest.gate import mitigation
    from loadtest.results import latest_run
    from loadtest.run.record import load_record

    if args.fresh_cluster and not args.rerun:
        raise ConfigError("--fresh-cluster goes with --rerun (a new cluster for every rerun)")
    if args.rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    if args.results is None:
        args.results = latest_run(args.out, args.profile)
        log(f"newest run of {args.profile}: {args.results}")
    summary = load_record(args.results)
    cfg = (summary.config or RunConfig()) if args.rerun else None
    if summary.verdict == "pass":
        log("warning: that run passed its SLOs: the objects confine agents that did no harm")
    plan = mitigation.Plan(shares_of_server=args.share) if args.share else None
    objs, why = mitigation.from_results(summary, plan)
    cluster, fresh = _mitigation_cluster(args)
    out = mitigation.write_yaml(objs, args.results / "mitigation" / "apf.yaml")
    log(f"{why}\nwrote {out}")
    if args.remove:
        mitigation.remove(cluster)
        log("removed the loadtest-agents FlowSchema and PriorityLevelConfiguration")
        return 0
    log(f"API server dry-run: {', '.join(mitigation.apply(cluster, objs, dry_run=True))} valid")
    if args.apply:
        log(f"applied: {', '.join(mitigation.apply(cluster, objs))}")
    if cfg is None:
        return 0
    from loadtest.report.mitigation import write_mitigation_report
    from loadtest.report.parts import draw

    verdict, comparison = mitigation.rerun(
        make_provider(args),
        args.name,
        cluster,
        objs,
        cfg,
        args.results / "mitigation",
        args.rounds,
        args.fresh_cluster,
        fresh,
        log,
    )
    draw(lambda: write_mitigation_report(comparison.parent), log)
    return 0 if verdict == mitigation.HOLDS else 1


def _mitigation_cluster(args: argparse.Namespace) -> tuple[Cluster, bool]:
    """The cluster to validate on and rerun in, and whether it is new. --fresh-cluster makes
    one when there is none (every rerun gets a new one anyway)."""
    if not args.fresh_cluster:
        return target_cluster(args), False
    provider = make_provider(args)
    cluster = provider.get(args.name)
    if cluster is None:
        log(f"creating {provider.name} cluster {args.name!r} (--fresh-cluster)")
        return provider.create(args.name), True
    if not cluster.created_by_harness:
        raise ClusterError(
            f"--fresh-cluster would delete {args.name!r}, which loadtest did not create"
        )
    return cluster, False


def _results_folder(d: Path) -> Path:
    """A run's results folder, or a one-line error (and nothing written anywhere)."""
    if not (d / "summary.json").is_file() and not (d / "raw" / "apiserver.jsonl").is_file():
        raise ConfigError(
            f"{d}: not a run's results folder (no summary.json, no raw/apiserver.jsonl)"
        )
    return d


def cmd_summarize(args: argparse.Namespace) -> int:
    summary = rebuild_summary(_results_folder(args.results))
    log(
        f"rebuilt {args.results / 'summary.json'} from raw streams "
        f"({', '.join(summary.get('measurements', {}))})"
    )
    return 0


def cmd_verdict(args: argparse.Namespace) -> int:
    from loadtest.run.record import load_record

    load_record(args.results)  # a missing or foreign folder: one line, no XML
    # without --slo, the SLOs the run recorded (the verdict's own default)
    return run_verdict_pytest(args.results, args.slo or "")


class Parser(argparse.ArgumentParser):
    """Bad flags are one line (argparse would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="loadtest", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tools", help="build or show the pinned Go toolchain")
    t.add_argument("action", choices=["build", "status"])
    t.add_argument("names", nargs="*", help="components to build (default: all)")
    t.add_argument("--force", action="store_true", help="rebuild even if up to date")
    t.add_argument("--versions", action="store_true", help="also run each binary's --version")
    t.set_defaults(func=cmd_tools)

    c = sub.add_parser("cluster", help="create, remove, list clusters")
    c.add_argument("action", choices=["up", "down", "list", "info"])
    c.add_argument("--provider", choices=PROVIDERS, default="local")
    c.add_argument("--name", default="loadtest")
    c.add_argument("--port", type=int, help="local: kube-apiserver port (default: random)")
    c.add_argument("--feature-gates", default="", help="local: kube-apiserver feature gates")
    c.add_argument(
        "--apiserver-arg",
        type=_key_value,
        action="append",
        help="local: extra kube-apiserver flag KEY=VALUE (repeatable)",
    )
    c.add_argument("--kubeconfig", type=Path, help="existing: kubeconfig (default $KUBECONFIG)")
    memory_arg(c)
    c.add_argument("--reuse", action="store_true", help="up: reuse a cluster of that name")
    c.set_defaults(func=cmd_cluster)

    s = sub.add_parser("seed", help="create (or --delete) a production-shaped inventory")
    cluster_target_args(s)
    s.add_argument("--file", type=Path, help="inventory spec (YAML); flags override it")
    s.add_argument("--inventory", help="inventory name (label value; default 'default')")
    for f in SPEC_FLAGS:
        s.add_argument("--" + f.replace("_", "-"), type=int, dest=f)
    s.add_argument("--concurrency", type=int, default=48, help="requests in flight")
    s.add_argument(
        "--wait",
        type=float,
        default=300,
        help="seconds to wait for nodes Ready and pods Running (0: don't)",
    )
    s.add_argument("--delete", action="store_true", help="remove everything labelled")
    s.set_defaults(func=cmd_seed)

    a = sub.add_parser("agents", help="run Locust telemetry agents against a cluster")
    cluster_target_args(a)
    a.add_argument("--profile", default="kubelet-like", help="profile name or file")
    a.add_argument("--agents", type=int, default=100, help="agents (one per node)")
    a.add_argument("--duration", type=float, default=60, help="seconds")
    a.add_argument("--spawn-rate", type=float, default=50, help="agents joining per second")
    a.add_argument("--shape", choices=["fixed", "rollout", "steps"], default="fixed")
    a.add_argument("--steps", default="", help="steps shape: AGENTS:SECONDS,...")
    a.add_argument("--processes", type=int, default=1, help="Locust worker processes")
    a.add_argument("--node-selector", default="type=kwok", help="nodes the agents sit on")
    a.add_argument("--decode", action="store_true", help="decode every list and event")
    a.add_argument("--out", type=Path, default=Path("results/agents"))
    _workers_args(a)
    a.set_defaults(func=cmd_agents)

    w = sub.add_parser("worker", help="a Locust worker for a master's agents (`--workers`)")
    w.add_argument("--master", required=True, help="HOST:PORT of the master")
    w.add_argument(
        "--api-server",
        default="",
        help="the API server as reached from here (default: the master's address)",
    )
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("run", help="the main job: cluster, inventory, agents, SLO verdict")
    cluster_target_args(r)
    r.set_defaults(name="loadtest")
    r.add_argument("--config", type=Path, help="run config YAML; flags override it")
    r.add_argument("--profile")
    r.add_argument("--agents", type=int)
    r.add_argument("--duration", type=float, dest="duration_s")
    r.add_argument("--spawn-rate", type=float)
    r.add_argument("--shape", choices=["fixed", "rollout", "steps"])
    r.add_argument("--steps")
    r.add_argument("--processes", type=int)
    r.add_argument("--nodes", type=int, help="inventory: fake nodes")
    r.add_argument("--pods-per-node", type=int, help="inventory: pods per node")
    r.add_argument("--slo", dest="slo_file", help="SLO file overriding the defaults")
    r.add_argument(
        "--restart-dns-at",
        type=float,
        dest="restart_dns_at_s",
        help="restart CoreDNS this many seconds into the load",
    )
    r.add_argument(
        "--delete-cluster",
        action="store_true",
        help="remove the cluster afterwards if this run created it",
    )
    r.add_argument("--out", type=Path, default=Path("results"))
    _workers_args(r)
    r.set_defaults(func=cmd_run)

    mg = sub.add_parser("mitigate", help="APF objects that confine the agents of a run")
    cluster_target_args(mg)
    src = mg.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="results", type=Path, help="results folder of a (failing) run")
    src.add_argument("--profile", help="the newest run of this profile in --out")
    mg.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="where --profile looks for runs (default results/)",
    )
    mg.add_argument(
        "--share",
        type=float,
        help="the agents' share of the API server's concurrency (default: "
        "derived from the run: seats for half the server's cores)",
    )
    mg.add_argument("--apply", action="store_true", help="apply to this harness's cluster")
    mg.add_argument("--remove", action="store_true", help="remove them again")
    mg.add_argument(
        "--rerun",
        action="store_true",
        help="rerun the scenario without and with them, interleaved, and judge",
    )
    mg.add_argument("--rounds", type=int, default=1, help="rerun rounds (each: without, with)")
    mg.add_argument(
        "--fresh-cluster",
        action="store_true",
        help="rerun: a new cluster for every run (for scenarios that bring the control plane down)",
    )
    mg.set_defaults(func=cmd_mitigate)

    sm = sub.add_parser("summarize", help="rebuild a run's summary from its raw streams")
    sm.add_argument("results", type=Path)
    sm.set_defaults(func=cmd_summarize)

    v = sub.add_parser("verdict", help="evaluate a run's SLOs with pytest")
    v.add_argument("results", type=Path)
    v.add_argument("--slo", help="SLO file to judge by (default: the SLOs the run recorded)")
    v.set_defaults(func=cmd_verdict)
    cli_gate.register(sub)  # the rollout gate's commands (compare, report, sweep, ...)
    cli_learn.register(sub)  # learn / record: profiles learned from a real agent
    cli_breakpoint.register(sub)  # the measured break point and its forecast
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as e:
        print(f"error: {e}\n{e.details()}", file=sys.stderr)
        return 1
    except LoadtestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a results folder that cannot be written, a file that is gone
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
