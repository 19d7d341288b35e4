"""Following a pod's log through the API server, as `kubectl logs -f` does, and resuming it.

GET /api/v1/namespaces/NS/pods/POD/log?follow=true&timestamps=true streams the container's
lines as it writes them. The kubelet keeps the log file, so a broken stream (an API server
that stalled, a restarted container) is resumed with sinceTime= the last line's time: lines
written meanwhile are read then, not lost. sinceTime has one-second resolution, so a resumed
stream repeats up to a second of lines: callers drop what they have seen (their records
carry their own identity). When the container restarted while the stream was down, the
previous container's lines since then are read first (previous=true).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from loadtest.clusters.base import Cluster, http_client

# (timestamp as the kubelet wrote it, RFC 3339 with nanoseconds; the line without it)
OnLine = Callable[[str, str], None]


def since_param(ts: str) -> str:
    """sinceTime from a log line's timestamp: RFC 3339 at one-second resolution, rounded
    down so no line is skipped."""
    return ts[:19] + "Z"


def split_line(raw: str) -> tuple[str, str] | None:
    """A `timestamps=true` log line into (timestamp, text); None for a blank line."""
    ts, sep, text = raw.partition(" ")
    if not sep or len(ts) < 20 or ts[4] != "-":
        return None
    return ts, text


class PodLogFollower:
    """Follows one pod's log on a daemon thread until the pod is gone or `stop` is called.
    `streams` counts the log requests made (a container that ends, a broken stream and the
    pod's deletion each end one); `errors` keeps the last few reasons."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        pod: str,
        on_line: OnLine,
        retry_s: float = 1.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.cluster = cluster
        self.path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
        self.pod = pod
        self.on_line = on_line
        self.retry_s = retry_s
        self.read_timeout_s = read_timeout_s
        self.last_ts: str | None = None
        self.streams = 0
        self.errors: list[str] = []
        self.gone = False
        self._restarts_seen: int | None = None
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name=f"logs-{pod}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        r = self._response
        if r is not None:
            r.close()  # unblocks the read
        self._thread.join(timeout)

    def join(self, timeout: float) -> bool:
        """Wait for the stream to end by itself (the pod deleted); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=self.read_timeout_s)
        with http_client(self.cluster, timeout=10) as c:
            c.timeout = timeout
            while not self._stop.is_set():
                if self.streams and self._stop.wait(self.retry_s):
                    break
                self.streams += 1
                try:
                    if not self._stream(c):
                        return
                except (httpx.HTTPError, OSError) as e:
                    self._error(f"{type(e).__name__}: {e}")

    def _stream(self, c: httpx.Client) -> bool:
        """One stream until it ends; False when the pod is gone (nothing more to read)."""
        pod = c.get(self.path)
        if pod.status_code == 404:
            self.gone = True
            return False
        if pod.status_code != 200:
            self._error(f"GET pod: HTTP {pod.status_code}")
            return True
        statuses = pod.json().get("status", {}).get("containerStatuses") or [{}]
        restarts = int(statuses[0].get("restartCount", 0))
        if (
            self._restarts_seen is not None
            and restarts > self._restarts_seen
            and self.last_ts is not None
        ):
            # restarted while we were away: the end of the previous container's log first
            r = c.get(
                f"{self.path}/log",
                params={
                    "previous": "true",
                    "timestamps": "true",
                    "sinceTime": since_param(self.last_ts),
                },
            )
            if r.status_code == 200:
                for raw in r.text.splitlines():
                    self._feed(raw)
        self._restarts_seen = restarts
        params = {"follow": "true", "timestamps": "true"}
        if self.last_ts is not None:
            params["sinceTime"] = since_param(self.last_ts)
        with c.stream("GET", f"{self.path}/log", params=params) as r:
            if r.status_code == 404:
                self.gone = True
                return False
            if r.status_code != 200:
                r.read()
                self._error(f"GET log: HTTP {r.status_code} {r.text[:200]}")
                return True
            self._response = r
            try:
                for raw in r.iter_lines():
                    self._feed(raw)
                    if self._stop.is_set():
                        return False
            finally:
                self._response = None
        return True

    def _feed(self, raw: str) -> None:
        parts = split_line(raw)
        if parts is None:
            return
        self.last_ts = parts[0]
        self.on_line(*parts)

    def _error(self, why: str) -> None:
        self.errors = [*self.errors[-4:], f"{time.strftime('%H:%M:%S')} {why}"]
