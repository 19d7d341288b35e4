"""The Locust side of the agents: the only module of the package that imports locust.

One Locust user is one agent on one node. The agent's watches and polls run in their own
greenlets; the user's task just keeps them alive, so Locust's spawn rate is the rollout
rate of the DaemonSet. Options come from Locust's own command line (or LOADTEST_* env).

Agent indexes are global: the master (or a local runner) holds the one IndexPool and hands
indexes out over Locust's custom messages, so agent k is node k % nodes and identity k in
whichever worker process (or, later, machine) runs it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

from loadtest.agents.agent import Agent, AgentStats
from loadtest.agents.identity import Identities, ensure_rbac
from loadtest.agents.profile import AgentProfile, load_profile
from loadtest.agents.shapes import parse_steps, rollout_tick
from loadtest.agents.slots import IndexPool
from loadtest.clusters.base import Cluster, http_client


class _Process:
    """What every user of this process shares: cluster, profile, identities, node names."""

    cluster: Cluster
    profile: AgentProfile
    identities: Identities
    nodes: list[str]
    stats = AgentStats()
    indexes: Indexes
    decode = False
    stats_out: Path | None = None


TAKE, GRANT, GIVE = "loadtest_agent_take", "loadtest_agent_grant", "loadtest_agent_give"
INDEX_TIMEOUT_S = 60.0


class Indexes:
    """This process's view of the run's one IndexPool: the pool itself on the master or a
    local runner, a request/reply over custom messages on a worker."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._requests = itertools.count()
        self._pending: dict[int, AsyncResult] = {}
        if not isinstance(runner, WorkerRunner):  # master or local: the pool lives here
            pool = IndexPool()

            def take(msg: Any, **_: Any) -> None:
                runner.send_message(GRANT, {"req": msg.data["req"], "index": pool.take()},
                                    client_id=msg.node_id)

            runner.register_message(TAKE, take)
            runner.register_message(GIVE, lambda msg, **_: pool.give(int(msg.data)))
        if not isinstance(runner, MasterRunner):  # this process runs agents
            runner.register_message(GRANT, self._granted)

    def take(self) -> int:
        req = next(self._requests)
        self._pending[req] = result = AsyncResult()
        try:
            self.runner.send_message(TAKE, {"req": req})
            return int(result.get(timeout=INDEX_TIMEOUT_S))
        except gevent.Timeout:
            raise RuntimeError(f"no agent index from the master in {INDEX_TIMEOUT_S:g}s") \
                from None
        finally:
            self._pending.pop(req, None)

    def give(self, k: int) -> None:
        try:
            self.runner.send_message(GIVE, k)
        except Exception:  # noqa: BLE001 - the master may be gone at the end of a run
            logging.getLogger(__name__).debug("could not give back agent index %d", k)

    def _granted(self, msg: Any, **_: Any) -> None:
        pending = self._pending.get(msg.data["req"])
        if pending is not None:
            pending.set(msg.data["index"])


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    if environment.runner is not None:
        _Process.indexes = Indexes(environment.runner)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--cluster-json", env_var="LOADTEST_CLUSTER_JSON", default="",
                        help="the harness's Cluster handle (cluster.json)")
    parser.add_argument("--agent-profile", env_var="LOADTEST_PROFILE", default="kubelet-like")
    parser.add_argument("--node-selector", env_var="LOADTEST_NODE_SELECTOR", default="")
    parser.add_argument("--decode", env_var="LOADTEST_DECODE", action="store_true",
                        default=False, help="decode every list and event (as an informer)")
    parser.add_argument("--agent-stats", env_var="LOADTEST_AGENT_STATS", default="",
                        help="write this process's agent counters (JSON) here at the end")
    parser.add_argument("--ramp-rate", env_var="LOADTEST_RAMP_RATE", type=float, default=0,
                        help="rollout shape: agents joining per second")
    parser.add_argument("--steps", env_var="LOADTEST_STEPS", default="",
                        help="step shape: 'agents:seconds,...' e.g. 100:60,200:60")


@events.test_start.add_listener
def _setup(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None or not opts.cluster_json:
        raise SystemExit("loadtest agents: --cluster-json (LOADTEST_CLUSTER_JSON) is required")
    p = _Process
    p.cluster = Cluster.from_json(Path(opts.cluster_json).read_text())
    p.profile = load_profile(opts.agent_profile)
    p.decode = bool(opts.decode)
    p.stats_out = Path(opts.agent_stats) if opts.agent_stats else None
    if environment.runner is None or not hasattr(environment.runner, "worker_index") or \
            environment.runner.worker_index in (0, -1):
        ensure_rbac(p.cluster, p.profile)
    p.identities = Identities(p.cluster, p.profile)
    p.nodes = list_nodes(p.cluster, opts.node_selector)
    if p.stats_out is not None:  # live progress reads the counters as the run goes
        gevent.spawn(_flush_stats, environment)


@events.quitting.add_listener
def _write_stats(environment: Environment, **_: Any) -> None:
    out = _Process.stats_out
    kind = type(environment.runner).__name__
    if out is None or kind == "MasterRunner":  # the master runs no agents
        return
    if kind == "WorkerRunner":  # one file per process, merged by the harness
        out = out.with_name(f"{out.stem}.{os.getpid()}.json")
    out.write_text(json.dumps(_Process.stats.as_dict(), indent=2))


def _flush_stats(environment: Environment, every_s: float = 5.0) -> None:
    while True:
        gevent.sleep(every_s)
        _write_stats(environment)


def list_nodes(cluster: Cluster, selector: str) -> list[str]:
    with http_client(cluster, timeout=60) as c:
        r = c.get("/api/v1/nodes", params={"labelSelector": selector},
                  headers={"Accept": "application/json;as=PartialObjectMetadataList;"
                                     "g=meta.k8s.io;v=v1"})
        r.raise_for_status()
    names = sorted(i["metadata"]["name"] for i in r.json()["items"])
    if not names:
        raise SystemExit(f"loadtest agents: no nodes match {selector!r}: seed some first")
    return names


class AgentUser(User):
    """One telemetry agent on one node."""

    def on_start(self) -> None:
        p = _Process
        self.index = i = p.indexes.take()
        self.agent = Agent(p.profile, p.nodes[i % len(p.nodes)], p.identities.endpoint(i),
                           self.environment.events.request.fire, p.stats, decode=p.decode)
        self.agent.start()

    @task
    def live(self) -> None:
        # The agent works in its own greenlets; the user only keeps it alive.
        gevent.sleep(3600)

    def on_stop(self) -> None:
        if hasattr(self, "agent"):
            self.agent.stop()
        if hasattr(self, "index"):
            _Process.indexes.give(self.index)


def _parsed_options(shape: LoadTestShape) -> Namespace:
    """The command line's options; a shape ticks only once Locust has parsed them."""
    opts = shape.runner.environment.parsed_options if shape.runner else None
    if opts is None:
        raise RuntimeError("the load shape ticked before Locust parsed its options")
    return opts


class RolloutShape(LoadTestShape):
    """A DaemonSet rollout: agents join at --ramp-rate per second up to --users, then hold."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        opts = _parsed_options(self)
        return rollout_tick(int(opts.num_users), float(opts.ramp_rate or opts.spawn_rate),
                            self.get_run_time(), float(opts.run_time or 0))


class StepShape(LoadTestShape):
    """A step load to find the knee: hold each agent count for its seconds, then stop."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        opts = _parsed_options(self)
        t = self.get_run_time()
        for step in parse_steps(opts.steps):
            if t < step[1]:
                return step[0], max(step[0] / 5, 1.0)
            t -= step[1]
        return None
