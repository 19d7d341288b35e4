"""`loadtest learn` and `loadtest record`: profiles learned from a real agent's requests."""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtest.agents.learn import Learned, learn, read_audit_log, write
from loadtest.agents.profile import PROFILES_DIR
from loadtest.cli.common import log


def _written(learned: Learned, out: Path | None) -> int:
    path = write(learned, out or PROFILES_DIR / f"{learned.profile.name}.yaml")
    left = sum(learned.left_out.values())
    log(
        f"learned {learned.profile.name!r} from {learned.used} requests of {learned.agents} "
        f"agents ({left} left out, listed in the file): {path}"
    )
    print(path)
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    learned = learn(
        read_audit_log(args.audit_log),
        args.user_agent,
        args.name,
        source=str(args.audit_log),
        content_type=args.content_type,
    )
    return _written(learned, args.out)


def cmd_record(args: argparse.Namespace) -> int:
    from loadtest.agents.record import Recording, record

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    rec = Recording(
        name=args.name,
        nodes=args.nodes,
        command=command,
        duration_s=args.duration,
        cluster=args.cluster or "",
        identity=args.identity,
        user_agent=args.user_agent,
        content_type=args.content_type,
        keep_cluster=args.keep_cluster,
    )
    learned, _ = record(rec, log)
    return _written(learned, args.out)


def register(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", required=True, help="the learned profile's name")
        p.add_argument("--out", type=Path, help="profile file (default profiles/NAME.yaml)")
        p.add_argument(
            "--content-type",
            choices=["json", "protobuf"],
            default="json",
            help="the agent's Accept type (audit logs do not record it)",
        )

    lr = sub.add_parser("learn", help="derive an agent profile from an API server audit log")
    lr.add_argument("--audit-log", type=Path, required=True, help="audit.k8s.io JSON lines")
    lr.add_argument("--user-agent", required=True, help="regular expression for the agent")
    common(lr)
    lr.set_defaults(func=cmd_learn)

    rc = sub.add_parser("record", help="run COMMAND as N agents on a local cluster, learn it")
    common(rc)
    rc.add_argument("--nodes", type=int, default=5, help="agents, one per fake node")
    rc.add_argument("--duration", type=float, default=60, help="seconds of recording")
    rc.add_argument(
        "--identity",
        choices=["shared-serviceaccount", "serviceaccount-per-agent"],
        default="shared-serviceaccount",
        help="the ServiceAccount(s) agents get",
    )
    rc.add_argument("--user-agent", default=".", help="keep only this user agent (regex)")
    rc.add_argument("--cluster", help="local cluster name (default rec-NAME; must not exist)")
    rc.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    rc.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    rc.set_defaults(func=cmd_record)
