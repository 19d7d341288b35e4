"""One telemetry agent: the LIST/WATCH/poll behaviour of a profile, on gevent.

This is the hot path: thousands of agents share one process, so a request is a plain
HTTP/1.1 exchange on the agent's own connections (geventhttpclient, C parser), lists are
streamed and only their head is parsed unless decoding is asked for, and JSON watch events
are read line by line with the resourceVersion taken by a bounded regex, not a JSON parse.
A target with `content_type: protobuf` asks for protobuf as client-go does; its lists' and
watch frames' metadata are read by `wire` (only the envelope and ObjectMeta/ListMeta).

Every request is reported through one callback with Locust's request-event signature, under
stable names ("LIST pods [node]", "WATCH pods [node]"), so this module needs no locust.

Known difference from client-go: client-go multiplexes an agent's streams over one HTTP/2
connection; here each concurrent stream of an agent has its own HTTP/1.1 connection. The
requests, their parameters and the bytes the API server serves are the same.
"""

from __future__ import annotations

import json
import random
import re
import ssl
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import gevent
import gevent.ssl
from geventhttpclient import HTTPClient

from loadtest.agents import wire
from loadtest.agents.profile import AgentProfile, Backoff, Poll, Target, Watch
from loadtest.stats import percentile

# Locust's request event: (request_type, name, response_time_ms, response_length, exception)
Report = Callable[..., None]

_RV = re.compile(rb'"resourceVersion":"(\d+)"')
_CONTINUE = re.compile(rb'"continue":"([^"]*)"')
_TYPE = re.compile(rb'^\{"type":"([A-Z]+)"')
JSON = "application/json"
HEAD_BYTES = 4096  # a list's metadata (resourceVersion, continue) is in its first bytes


class Gone(Exception):
    """410: the resourceVersion is too old; an informer relists."""


class Throttled(Exception):
    """429: retry after the server's Retry-After."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429 Too Many Requests (Retry-After {retry_after:g}s)")
        self.retry_after = retry_after


class HTTPStatusError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


@dataclass
class AgentStats:
    """Counters of one process's agents, for results and Locust's report."""

    events: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    # responses by the Content-Type the server answered with (protobuf or JSON)
    content_types: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    relists_410: int = 0
    throttled_429: int = 0
    errors: int = 0
    agents_started: int = 0
    agents_synced: int = 0
    agents_to_sync: int = 0  # started agents that have watches to sync
    first_event_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "bytes": dict(self.bytes),
            "requests": dict(self.requests),
            "content_types": dict(self.content_types),
            "reconnects": self.reconnects,
            "relists_410": self.relists_410,
            "throttled_429": self.throttled_429,
            "errors": self.errors,
            "agents_started": self.agents_started,
            "agents_synced": self.agents_synced,
            "agents_to_sync": self.agents_to_sync,
            "watch_first_event_ms": _summary(self.first_event_ms),
        }


def _summary(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"count": 0}
    return {
        "count": len(xs),
        "p50": percentile(xs, 0.5),
        "p99": percentile(xs, 0.99),
        "max": max(xs),
    }


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom an agent talks: shared by all agents of a process except headers."""

    server: str
    ssl_context: ssl.SSLContext
    headers: dict[str, str]  # identity (Authorization or Impersonate-*), never logged

    @property
    def host_port(self) -> tuple[str, int]:
        u = urlsplit(self.server)
        return u.hostname or "127.0.0.1", u.port or 443


def ssl_context(
    ca_file: str | None, cert: str | None = None, key: str | None = None, insecure: bool = False
) -> ssl.SSLContext:
    # gevent's SSLContext (not create_default_context, which returns the stdlib class):
    # a stdlib SSL socket would block the whole process on every read.
    ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:  # the kubeconfig's insecure-skip-tls-verify
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs()
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def target_path(t: Target, node: str) -> tuple[str, dict[str, str]]:
    """The collection path and selector parameters for a target, as this agent's node sees it."""
    base = "/api/" + t.api_version if not t.group else f"/apis/{t.group}/{t.api_version}"
    path = (
        f"{base}/namespaces/{t.namespace}/{t.resource}"
        if t.scope == "namespace"
        else f"{base}/{t.resource}"
    )
    fields = [f for f in (t.field_selector,) if f]
    if t.scope == "node":
        fields.insert(0, ("metadata.name=" if t.resource == "nodes" else "spec.nodeName=") + node)
    params = {}
    if fields:
        params["fieldSelector"] = ",".join(fields)
    if t.label_selector:
        params["labelSelector"] = t.label_selector
    return path, params


class BackoffTimer:
    """client-go's wait.Backoff: grows by factor to a cap, with jitter; reset on success."""

    def __init__(self, b: Backoff) -> None:
        self.b = b
        self.current = b.initial_seconds

    def next(self) -> float:
        d = self.current * (1 + random.random() * self.b.jitter)
        self.current = min(self.current * self.b.factor, self.b.max_seconds)
        return min(d, self.b.max_seconds)

    def reset(self) -> None:
        self.current = self.b.initial_seconds


class Agent:
    """One agent on one node: a greenlet per watch and per poll, started by `start`."""

    def __init__(
        self,
        profile: AgentProfile,
        node: str,
        endpoint: Endpoint,
        report: Report,
        stats: AgentStats,
        decode: bool = False,
    ) -> None:
        self.profile = profile
        self.node = node
        self.endpoint = endpoint
        self.report = report
        self.stats = stats
        self.decode = decode
        host, port = endpoint.host_port
        streams = len(profile.watches) + len(profile.polls)
        max_timeout = max(
            [w.timeout_seconds * (1 + w.timeout_jitter) for w in profile.watches] + [60.0]
        )
        self.http = HTTPClient(
            host,
            port,
            ssl=True,
            ssl_context_factory=lambda *a, **k: endpoint.ssl_context,
            concurrency=streams,
            connection_timeout=10,
            # A watch may be quiet between bookmarks (about a minute) until its timeout.
            network_timeout=max_timeout + 30,
            block_size=65536,
            headers={
                "User-Agent": profile.user_agent,
                "Accept": JSON,
                "Accept-Encoding": "gzip",
                **endpoint.headers,
            },
        )
        self.greenlets: list[gevent.Greenlet] = []
        self._synced: set[int] = set()  # the watches whose initial list has completed

    def start(self) -> None:
        self.stats.agents_started += 1
        self.stats.agents_to_sync += bool(self.profile.watches)
        for i, w in enumerate(self.profile.watches):
            self.greenlets.append(gevent.spawn(self._informer, w, None, i))
        for p in self.profile.polls:
            self.greenlets.append(gevent.spawn(self._poller, p))

    def stop(self) -> None:
        gevent.killall(self.greenlets, block=True, timeout=5)
        self.greenlets.clear()
        self.http.close()

    def join(self, timeout: float | None = None) -> None:
        gevent.joinall(self.greenlets, timeout=timeout)

    # --- behaviours ---------------------------------------------------------------------

    def _informer(self, w: Watch, rv: str | None = None, index: int = 0) -> None:
        """Reflector loop: list (or watch-list), then watch from the last version, forever.
        `rv` starts it from a known version (as a restarted informer with a cache would);
        `index` is the watch's place in the profile, for sync tracking."""
        backoff = BackoffTimer(self.profile.backoff)
        list_rv = w.list_resource_version
        while True:
            try:
                if rv is None:
                    if w.watch_list:
                        rv = self.watch(w, None, send_initial_events=True)
                    else:
                        rv = self.list(w, list_rv)
                    self._mark_synced(index)
                    list_rv = w.list_resource_version
                rv = self.watch(w, rv)
                self.stats.reconnects += 1
                backoff.reset()
            except Gone:
                # client-go relists with a consistent read once its version is unavailable.
                self.stats.relists_410 += 1
                rv, list_rv = None, ""
            except Throttled as e:
                self.stats.throttled_429 += 1
                gevent.sleep(e.retry_after)
            except gevent.GreenletExit:
                raise
            except Exception:  # noqa: BLE001 - as an informer: count any failure, back off, retry
                self.stats.errors += 1
                gevent.sleep(backoff.next())

    def _poller(self, p: Poll) -> None:
        # Spread agents over the interval, as independently started pods are.
        gevent.sleep(random.random() * p.interval_seconds)
        backoff = BackoffTimer(self.profile.backoff)
        while True:
            try:
                self.list(p, p.list_resource_version)
                backoff.reset()
                gevent.sleep(p.interval_seconds * (1 + p.jitter * (2 * random.random() - 1)))
            except Throttled as e:
                self.stats.throttled_429 += 1
                gevent.sleep(e.retry_after)
            except gevent.GreenletExit:
                raise
            except Exception:  # noqa: BLE001 - as a poller: count any failure, back off, retry
                self.stats.errors += 1
                gevent.sleep(backoff.next())

    def _mark_synced(self, index: int) -> None:
        """An agent is synced once each of its watches has listed once; a relist is not news."""
        if index in self._synced:
            return
        self._synced.add(index)
        if len(self._synced) == len(self.profile.watches):
            self.stats.agents_synced += 1

    # --- requests -----------------------------------------------------------------------

    def list(self, t: Target, resource_version: str) -> str:
        """A full LIST with paging; returns the list's resourceVersion."""
        path, params = target_path(t, self.node)
        params["resourceVersion"] = resource_version
        if t.page_size:
            params["limit"] = str(t.page_size)
        name = f"LIST {t.label}"
        rv = ""
        while True:
            t0 = time.perf_counter()
            size = 0
            try:
                rv, cont, size = self._list_page(path, params, _accept(t))
            except Exception as e:
                self._report("LIST", name, t0, size, e)
                raise
            self._report("LIST", name, t0, size, None)
            if not cont:
                return rv
            params = {**params, "continue": cont}
            params.pop("resourceVersion", None)  # a continue token carries its own version

    def _list_page(
        self, path: str, params: dict[str, str], accept: str = JSON
    ) -> tuple[str, str, int]:
        resp = self.http.get(f"{path}?{urlencode(params)}", headers={"Accept": accept})
        try:
            _check(resp)
            proto = self._served_protobuf(resp)
            gz = resp.get("content-encoding", "") == "gzip"
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gz else None
            size = 0
            head = b""
            body: list[bytes] | None = [] if self.decode else None
            while True:
                chunk = resp.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if inflate is not None and (body is not None or len(head) < HEAD_BYTES):
                    chunk = inflate.decompress(chunk)
                if body is not None:
                    body.append(chunk)
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
        finally:
            resp.release()
        if proto:
            if body is not None:
                whole = b"".join(body)
                wire.list_items(whole)
                return (*wire.list_meta(whole), size)
            return (*wire.list_meta(head), size)
        if body is not None:
            doc = json.loads(b"".join(body))
            md = doc.get("metadata", {})
            return md.get("resourceVersion", ""), md.get("continue", ""), size
        m = _RV.search(head)
        c = _CONTINUE.search(head)
        return (m.group(1).decode() if m else ""), (c.group(1).decode() if c else ""), size

    def watch(self, w: Watch, rv: str | None, send_initial_events: bool = False) -> str:
        """One WATCH until the server ends it; returns the last resourceVersion seen."""
        path, params = target_path(w, self.node)
        params.update(
            watch="1",
            timeoutSeconds=str(int(w.timeout_seconds * (1 + random.random() * w.timeout_jitter))),
        )
        if w.bookmarks or send_initial_events:
            params["allowWatchBookmarks"] = "true"
        if send_initial_events:
            params.update(
                sendInitialEvents="true", resourceVersionMatch="NotOlderThan", resourceVersion=""
            )
        elif rv is not None:
            params["resourceVersion"] = rv
        name = f"WATCH {w.label}"
        t0 = time.perf_counter()
        last = rv or ""
        first = True
        # Reported when the stream is established (Locust shows connect latency); bytes and
        # events are counted as they arrive, so a watch cut by the end of a run still counts.
        try:
            resp = self.http.get(f"{path}?{urlencode(params)}", headers={"Accept": _accept(w)})
        except Exception as e:
            self._report("WATCH", name, t0, 0, e)
            raise
        try:
            try:
                _check(resp)
            except Exception as e:
                self._report("WATCH", name, t0, 0, e)
                raise
            self._report("WATCH", name, t0, 0, None)
            stream = (
                _proto_events(resp)
                if self._served_protobuf(resp)
                else _json_events(resp, self.decode)
            )
            for size, ev in stream:
                self.stats.bytes[name] += size
                if first:
                    self.stats.first_event_ms.append((time.perf_counter() - t0) * 1000)
                    first = False
                self.stats.events[f"{w.label} {ev.type}"] += 1
                if ev.type == "ERROR":
                    if ev.code == 410:
                        raise Gone(ev.message or "410 Gone")
                    raise HTTPStatusError(ev.code or 500, ev.message.encode())
                if ev.resource_version:
                    last = ev.resource_version
        finally:
            resp.release()
        return last

    def _served_protobuf(self, resp: Any) -> bool:
        ctype = resp.get("content-type", "").partition(";")[0].strip()
        self.stats.content_types[ctype] += 1
        return ctype == wire.CONTENT_TYPE

    def _report(self, verb: str, name: str, t0: float, size: int, exc: Exception | None) -> None:
        self.stats.requests[name] += 1
        self.stats.bytes[name] += size
        self.report(
            request_type=verb,
            name=name,
            response_time=(time.perf_counter() - t0) * 1000,
            response_length=size,
            exception=exc,
            context={},
        )


def _accept(t: Target) -> str:
    return wire.ACCEPT if t.content_type == "protobuf" else JSON


def _json_events(resp: Any, decode: bool) -> Iterator[tuple[int, wire.Event]]:
    """A JSON watch stream, one event a line: (bytes, event)."""
    while line := resp.readline(b"\n"):
        kind = _TYPE.match(line)
        etype = kind.group(1).decode() if kind else "UNKNOWN"
        if etype == "ERROR":
            status = json.loads(line).get("object", {})
            yield (
                len(line),
                wire.Event(
                    etype,
                    code=int(status.get("code", 500)),
                    message=status.get("message", line.decode()[:200]),
                ),
            )
            continue
        m = _RV.search(line, 0, 2048)
        if decode:
            json.loads(line)
        yield len(line), wire.Event(etype, m.group(1).decode() if m else "")


def _proto_events(resp: Any) -> Iterator[tuple[int, wire.Event]]:
    """A protobuf watch stream, length-prefixed frames: (bytes, event)."""
    while header := resp.read(wire.FRAME_HEADER):
        n = wire.frame_length(header)
        frame = resp.read(n)
        if len(frame) < n:
            raise wire.WireError(f"watch frame cut short ({len(frame)} of {n} bytes)")
        yield wire.FRAME_HEADER + n, wire.watch_event(frame)


def _check(resp: Any) -> None:
    code = resp.status_code
    if code == 200:
        return
    body = resp.read()
    if code == 410:
        raise Gone(body[:200].decode(errors="replace"))
    if code == 429:
        raise Throttled(float(resp.get("retry-after", "1") or 1))
    raise HTTPStatusError(code, body)
