"""The protobuf reader on bytes captured from a real kube-apiserver v1.33
(tests/fixtures/protobuf, see capture.py there; expected.json holds the same facts as JSON)."""

import base64
import gzip
import json

import pytest

from loadtest.agents import wire
from loadtest.agents.agent import Agent, AgentStats, Endpoint, Gone, ssl_context
from loadtest.agents.profile import AgentProfile, Watch

from .conftest import FIXTURES

PB = FIXTURES / "protobuf"
EXPECTED = json.loads((PB / "expected.json").read_text())


def _token(cont: str) -> tuple[int, str]:
    """A continue token's (version, start key); the watch cache and etcd spell the key
    with and without its leading slash."""
    doc = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
    return doc["rv"], doc["start"].lstrip("/")


def test_list_metadata_is_read_from_the_head_alone():
    body = (PB / "list-page.pb").read_bytes()
    rv, cont = wire.list_meta(body)
    assert rv == EXPECTED["list"]["resourceVersion"]
    assert _token(cont) == _token(EXPECTED["list"]["continue"]) == (int(rv), "fixture-1\x00")
    # ListMeta precedes the items: the first few hundred bytes are enough
    assert wire.list_meta(body[:200]) == (rv, cont)
    with pytest.raises(wire.WireError):
        wire.list_meta(body[:40])  # cut inside ListMeta: an error, never a wrong version
    assert [list(i) for i in wire.list_items(body)] == EXPECTED["list"]["items"]


def test_watch_frames_give_each_event_and_its_version():
    stream = (PB / "watch.pb").read_bytes()
    events, pos = [], 0
    while pos < len(stream):
        n = wire.frame_length(stream[pos : pos + wire.FRAME_HEADER])
        events.append(
            wire.watch_event(stream[pos + wire.FRAME_HEADER : pos + wire.FRAME_HEADER + n])
        )
        pos += wire.FRAME_HEADER + n
    assert pos == len(stream)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0].resource_version == EXPECTED["watch"]["created"]
    assert events[-1].resource_version == EXPECTED["watch"]["deleted"]
    gone = (PB / "watch-410.pb").read_bytes()
    [err] = [wire.watch_event(gone[4:])]
    assert (err.type, err.code) == ("ERROR", 410) and "too old" in err.message


def test_not_protobuf_is_refused():
    with pytest.raises(wire.WireError, match="no protobuf envelope"):
        wire.list_meta(b'{"kind":"PodList"}')
    with pytest.raises(wire.WireError, match="truncated varint"):
        wire.varint(b"\xff\xff", 0)


class _Response:
    """A response replaying captured bytes in awkward chunks (pure logic: no server)."""

    def __init__(
        self, body: bytes, ctype: str, gzipped: bool = False, chunk: int | None = None
    ) -> None:
        self.body = gzip.compress(body) if gzipped else body
        self.headers = {"content-type": ctype, **({"content-encoding": "gzip"} if gzipped else {})}
        self.status_code, self.chunk, self.pos = 200, chunk, 0

    def get(self, k: str, default: str = "") -> str:
        return self.headers.get(k, default)

    def read(self, n: int) -> bytes:
        # geventhttpclient's read(n) gives n bytes unless the body ends; `chunk` makes a
        # list's 64 KiB reads come back short, as a stream read may
        n = min(n, self.chunk or n)
        out = self.body[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def release(self) -> None:
        pass


class _HTTP:
    def __init__(self, resp: _Response) -> None:
        self.resp = resp
        self.sent: list[tuple[str, dict[str, str]]] = []

    def get(self, url: str, headers: dict[str, str]) -> _Response:
        self.sent.append((url, headers))
        return self.resp

    def close(self) -> None:
        pass


def _agent(resp: _Response, decode: bool = False) -> tuple[Agent, _HTTP]:
    profile = AgentProfile(
        name="x", watches=[Watch(resource="pods", scope="node", content_type="protobuf")]
    )
    agent = Agent(
        profile,
        "n1",
        Endpoint("https://127.0.0.1:1", ssl_context(None), {}),
        lambda **_: None,
        AgentStats(),
        decode=decode,
    )
    agent.http = http = _HTTP(resp)  # type: ignore[assignment]
    return agent, http


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("decode", [False, True])
def test_agent_asks_for_protobuf_and_reads_a_list_page(gzipped, decode):
    body = (PB / "list-page.pb").read_bytes()
    agent, http = _agent(_Response(body, wire.CONTENT_TYPE, gzipped, chunk=7), decode)
    rv, cont, size = agent._list_page("/api/v1/pods", {}, wire.ACCEPT)
    assert http.sent[0][1]["Accept"] == "application/vnd.kubernetes.protobuf,application/json"
    assert (rv, cont) == wire.list_meta(body) and rv == EXPECTED["list"]["resourceVersion"]
    assert size == len(http.resp.body)
    assert agent.stats.content_types == {wire.CONTENT_TYPE: 1}


def test_agent_reads_protobuf_watch_frames_and_relists_on_410():
    stream = (PB / "watch.pb").read_bytes()
    agent, _ = _agent(_Response(stream, EXPECTED["watch_content_type"]))
    w = agent.profile.watches[0]
    assert agent.watch(w, EXPECTED["list"]["resourceVersion"]) == EXPECTED["watch"]["deleted"]
    assert agent.stats.events == {
        "pods [node] ADDED": 1,
        "pods [node] MODIFIED": 1,
        "pods [node] DELETED": 1,
    }
    assert agent.stats.bytes["WATCH pods [node]"] == len(stream)
    agent.http = _HTTP(
        _Response(
            (PB / "watch-410.pb").read_bytes(),  # type: ignore[assignment]
            EXPECTED["watch_content_type"],
        )
    )
    with pytest.raises(Gone, match="too old resource version"):
        agent.watch(w, "1")


def test_a_server_answering_json_to_a_protobuf_agent_is_read_as_json():
    """Accept lists JSON second, as client-go's does: a kind with no protobuf form (a CRD)
    is answered in JSON, and the agent must read what it was served."""
    body = b'{"kind":"PodList","metadata":{"resourceVersion":"77","continue":"abc"},"items":[]}'
    agent, _ = _agent(_Response(body, "application/json"))
    assert agent._list_page("/api/v1/pods", {}, wire.ACCEPT)[:2] == ("77", "abc")
