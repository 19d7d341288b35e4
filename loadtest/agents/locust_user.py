"""The Locust side of the agents: the only module of the package that imports locust.

One Locust user is one agent on one node. The agent's watches and polls run in their own
greenlets; the user's task just keeps them alive, so Locust's spawn rate is the rollout
rate of the DaemonSet. Options come from Locust's own command line (or LOADTEST_* env).

Agent indexes are global: the master (or a local runner) holds the one IndexPool and hands
indexes out over Locust's custom messages, so agent k is node k % nodes and identity k in
whichever worker process or machine runs it. A worker reads no local files: it says HELLO
and the master answers with the cluster handle, credentials, profile and nodes (remote.py);
workers send their agents' counters with Locust's own stats reports, and the master writes
the sum, with the workers that went missing, at the end.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

from loadtest.agents.agent import Agent, AgentStats
from loadtest.agents.identity import SHARED_SA, Identities, ensure_rbac, request_token
from loadtest.agents.profile import AgentProfile, load_profile
from loadtest.agents.remote import Greeter, Ledger, WorkerSetup, materialize, worker_payload
from loadtest.agents.runner import add_counters
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
    # set once this process can run agents: at init locally, on the master's SETUP on a worker
    ready = AsyncResult()
    worker: WorkerSetup | None = None
    # what --agent-stats gets: this process's counters, or on the master the workers' sum
    counters: Callable[[], dict[str, Any]] | None = None


TAKE, GRANT, GIVE = "loadtest_agent_take", "loadtest_agent_grant", "loadtest_agent_give"
HELLO, SETUP = "loadtest_worker_hello", "loadtest_worker_setup"
# At the end the master asks each worker to stop its agents and send its last report before
# Locust's own quit, which waits 0.5 s for it: on a busy machine the last seconds were lost.
FINAL, FINAL_SENT = "loadtest_worker_final", "loadtest_worker_final_sent"
FINAL_TIMEOUT_S = 30.0
INDEX_TIMEOUT_S = 60.0
SETUP_TIMEOUT_S = 60.0
LOG = logging.getLogger(__name__)


def progress(msg: str) -> None:
    """A line the harness forwards to its own log while Locust runs."""
    print(f"loadtest: {msg}", file=sys.stderr, flush=True)


class Indexes:
    """This process's view of the run's one IndexPool: the pool itself on the master or a
    local runner, a request/reply over custom messages on a worker."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._requests = itertools.count()
        self._pending: dict[int, AsyncResult] = {}
        self.pool = IndexPool()
        self.ledger = Ledger(add_counters)
        if not isinstance(runner, WorkerRunner):  # master or local: the pool lives here

            def take(msg: Any, **_: Any) -> None:
                k = self.pool.take()
                self.ledger.granted(k, str(msg.node_id))
                runner.send_message(
                    GRANT, {"req": msg.data["req"], "index": k}, client_id=msg.node_id
                )

            def give(msg: Any, **_: Any) -> None:
                self.pool.give(int(msg.data))
                self.ledger.returned(int(msg.data))

            runner.register_message(TAKE, take)
            runner.register_message(GIVE, give)
        if not isinstance(runner, MasterRunner):  # this process runs agents
            runner.register_message(GRANT, self._granted)

    def take(self) -> int:
        req = next(self._requests)
        self._pending[req] = result = AsyncResult()
        try:
            self.runner.send_message(TAKE, {"req": req})
            return int(result.get(timeout=INDEX_TIMEOUT_S))
        except gevent.Timeout:
            raise RuntimeError(f"no agent index from the master in {INDEX_TIMEOUT_S:g}s") from None
        finally:
            self._pending.pop(req, None)

    def give(self, k: int) -> None:
        try:
            self.runner.send_message(GIVE, k)
        except Exception:  # noqa: BLE001 - the master may be gone at the end of a run
            LOG.debug("could not give back agent index %d", k)

    def _granted(self, msg: Any, **_: Any) -> None:
        pending = self._pending.get(msg.data["req"])
        if pending is not None:
            pending.set(msg.data["index"])


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    runner, opts = environment.runner, environment.parsed_options
    if runner is None or opts is None:
        return
    _Process.indexes = Indexes(runner)
    if isinstance(runner, WorkerRunner):
        _join_master(runner, str(opts.worker_api_server or ""))
        return
    if not opts.cluster_json:
        raise SystemExit("loadtest agents: --cluster-json (LOADTEST_CLUSTER_JSON) is required")
    greeter = Greeter(runner, HELLO, SETUP) if isinstance(runner, MasterRunner) else None
    cluster = Cluster.from_json(Path(opts.cluster_json).read_text())
    profile = load_profile(opts.agent_profile)
    ensure_rbac(cluster, profile)
    nodes = list_nodes(cluster, opts.node_selector)
    if greeter is not None and isinstance(runner, MasterRunner):
        _serve_workers(
            runner,
            greeter,
            cluster,
            profile,
            nodes,
            bool(opts.decode),
            int(opts.expect_workers or 1),
        )
    else:
        _use(cluster, profile, nodes, bool(opts.decode))
        _Process.counters = _Process.stats.as_dict
        _Process.ready.set(True)
    if opts.agent_stats:  # live progress reads the counters as the run goes
        gevent.spawn(_flush_stats, environment)


def _use(
    cluster: Cluster,
    profile: AgentProfile,
    nodes: list[str],
    decode: bool,
    shared_token: str | None = None,
) -> None:
    p = _Process
    p.cluster, p.profile, p.nodes, p.decode = cluster, profile, nodes, decode
    p.identities = Identities(cluster, profile, shared_token=shared_token)


def _join_master(runner: WorkerRunner, api_server: str) -> None:
    """Worker: ask the master for the cluster handle, credentials, profile and nodes."""

    def setup(msg: Any, **_: Any) -> None:
        if _Process.ready.ready():
            return
        w = _Process.worker = materialize(msg.data, api_server)
        _use(w.cluster, w.profile, w.nodes, w.decode, w.shared_token)
        _Process.ready.set(True)

    def hello() -> None:  # again until answered: a master still starting drops messages
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while not _Process.ready.ready() and time.monotonic() < deadline:
            runner.send_message(HELLO, {})
            gevent.sleep(5)

    def final(msg: Any, **_: Any) -> None:
        runner.stop()  # the agents end here, so the report below is their last
        runner._send_stats()  # Locust's stats and (report_to_master) the agents' counters
        runner.send_message(FINAL_SENT, {})

    runner.register_message(SETUP, setup)
    runner.register_message(FINAL, final)
    gevent.spawn(hello)

    @events.report_to_master.add_listener
    def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        data["loadtest_agents"] = _Process.stats.as_dict()


def _serve_workers(
    runner: MasterRunner,
    greeter: Greeter,
    cluster: Cluster,
    profile: AgentProfile,
    nodes: list[str],
    decode: bool,
    expected: int,
) -> None:
    """Master: hand each worker its setup, keep its counters, notice the ones that vanish."""
    shared = (
        request_token(cluster, SHARED_SA) if profile.identity == "shared-serviceaccount" else None
    )
    greeter.ready(worker_payload(cluster, profile, nodes, decode, shared))
    ledger, pool = _Process.indexes.ledger, _Process.indexes.pool
    t0 = time.monotonic()

    @events.worker_report.add_listener
    def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        ledger.report(client_id, data.get("loadtest_agents"))

    def watch() -> None:
        shown = -1
        while len(runner.clients.ready) + len(runner.clients.running) < expected:
            n = len(runner.clients.ready)
            if n != shown or int(time.monotonic() - t0) % 10 == 0:
                progress(
                    f"waiting for workers: {n} of {expected} connected "
                    f"({time.monotonic() - t0:.0f}s)"
                )
                shown = n
            gevent.sleep(1)
        progress(f"{expected} worker(s) connected after {time.monotonic() - t0:.0f}s")
        while True:
            for c in runner.clients.missing:
                lost = ledger.missing(str(c.id), time.monotonic() - t0)
                if lost is not None:
                    for k in lost:
                        pool.give(k)
                    progress(
                        f"worker {c.id} lost after {time.monotonic() - t0:.0f}s with "
                        f"{len(lost)} agents; the run goes on"
                    )
            gevent.sleep(1)

    gevent.spawn(watch)
    finals: set[str] = set()
    runner.register_message(FINAL_SENT, lambda msg, **_: finals.add(str(msg.node_id)))

    @events.test_stopping.add_listener
    def _final(**_: Any) -> None:
        asked = {str(c.id) for c in runner.clients.all if c.state != "missing"}
        progress(f"stopping the agents on {len(asked)} worker(s)")
        for w in asked:
            runner.send_message(FINAL, {}, client_id=w)
        deadline = time.monotonic() + FINAL_TIMEOUT_S
        while not asked <= finals and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if not asked <= finals:
            progress(
                f"no final report from {len(asked - finals)} worker(s) in "
                f"{FINAL_TIMEOUT_S:g}s: their last seconds are not counted"
            )

    _Process.counters = lambda: ledger.summary(expected)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--cluster-json",
        env_var="LOADTEST_CLUSTER_JSON",
        default="",
        help="the harness's Cluster handle (cluster.json)",
    )
    parser.add_argument("--agent-profile", env_var="LOADTEST_PROFILE", default="kubelet-like")
    parser.add_argument("--node-selector", env_var="LOADTEST_NODE_SELECTOR", default="")
    parser.add_argument(
        "--decode",
        env_var="LOADTEST_DECODE",
        action="store_true",
        default=False,
        help="decode every list and event (as an informer)",
    )
    parser.add_argument(
        "--agent-stats",
        env_var="LOADTEST_AGENT_STATS",
        default="",
        help="write the agents' counters (JSON) here at the end",
    )
    parser.add_argument(
        "--ramp-rate",
        env_var="LOADTEST_RAMP_RATE",
        type=float,
        default=0,
        help="rollout shape: agents joining per second",
    )
    parser.add_argument(
        "--steps",
        env_var="LOADTEST_STEPS",
        default="",
        help="step shape: 'agents:seconds,...' e.g. 100:60,200:60",
    )
    parser.add_argument(
        "--worker-api-server",
        env_var="LOADTEST_WORKER_API_SERVER",
        default="",
        help="worker: the API server as this worker reaches it",
    )


def _write_stats(environment: Environment) -> None:
    """The run's agent counters (a local runner's own, or the master's sum of its
    workers') to --agent-stats; workers write nothing, they report to the master."""
    opts = environment.parsed_options
    if _Process.counters is not None and opts is not None and opts.agent_stats:
        Path(opts.agent_stats).write_text(json.dumps(_Process.counters(), indent=2))


@events.quitting.add_listener
def _at_the_end(environment: Environment, **_: Any) -> None:
    _write_stats(environment)
    if _Process.worker is not None:
        _Process.worker.close()


def _flush_stats(environment: Environment, every_s: float = 5.0) -> None:
    while True:
        gevent.sleep(every_s)
        _write_stats(environment)


def list_nodes(cluster: Cluster, selector: str) -> list[str]:
    with http_client(cluster, timeout=60) as c:
        r = c.get(
            "/api/v1/nodes",
            params={"labelSelector": selector},
            headers={"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"},
        )
        r.raise_for_status()
    names = sorted(i["metadata"]["name"] for i in r.json()["items"])
    if not names:
        raise SystemExit(f"loadtest agents: no nodes match {selector!r}: seed some first")
    return names


class AgentUser(User):
    """One telemetry agent on one node."""

    def on_start(self) -> None:
        p = _Process
        p.ready.get(timeout=SETUP_TIMEOUT_S)  # a worker's setup comes from the master
        self.index = i = p.indexes.take()
        self.agent = Agent(
            p.profile,
            p.nodes[i % len(p.nodes)],
            p.identities.endpoint(i),
            self.environment.events.request.fire,
            p.stats,
            decode=p.decode,
        )
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
        return rollout_tick(
            int(opts.num_users),
            float(opts.ramp_rate or opts.spawn_rate),
            self.get_run_time(),
            float(opts.run_time or 0),
        )


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
