"""Just enough of Kubernetes' protobuf encoding to read what an informer needs (pure).

An agent asking for `application/vnd.kubernetes.protobuf` gets, for a LIST, the envelope
"k8s\\x00" + runtime.Unknown{typeMeta=1, raw=2, contentEncoding=3, contentType=4} whose raw is
the List: field 1 ListMeta{resourceVersion=2, continue=3}, field 2 the items. A WATCH is a
stream of frames, each a 4-byte big-endian length then a WatchEvent{type=1, object=2
RawExtension{raw=1}} (no envelope), the raw being an envelope again around the object
(ObjectMeta is field 1, its resourceVersion field 6; a Status has code=6, message=3).

No protobuf package: there are no Kubernetes .proto bindings for Python to lean on, four
fields of the generic wire format are all that is read, and a LIST is parsed from its
first bytes only (ListMeta precedes the items) while the rest streams past unparsed; a
generated-code decoder would want the whole message in memory first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
# What client-go sends when a client is configured for protobuf (rest.Config
# AcceptContentTypes): protobuf first, JSON for the kinds that have no protobuf form.
ACCEPT = CONTENT_TYPE + ",application/json"
FRAME_HEADER = 4  # a watch frame's big-endian length prefix


class WireError(ValueError):
    """Bytes that are not what the API server sends (or not all of it)."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at pos and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(buf: bytes, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int]]:
    """(field number, a varint's value or a length-delimited field's start, its end).

    A length-delimited field's end may lie beyond `buf` when buf is only a message's head:
    the caller decides whether it needs the rest (and clamps to len(buf) to look inside)."""
    end = len(buf) if end is None else min(end, len(buf))
    while pos < end:
        key, pos = varint(buf, pos)
        num, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = varint(buf, pos)
            yield num, value, pos
        elif wire_type == 2:
            n, pos = varint(buf, pos)
            yield num, pos, pos + n
            pos += n
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:  # groups (3, 4) are not used by Kubernetes
            raise WireError(f"unsupported wire type {wire_type} (field {num})")


def _string(buf: bytes, start: int, stop: int) -> str:
    if stop > len(buf):
        raise WireError("truncated string")
    return buf[start:stop].decode()


def _field(buf: bytes, want: int, pos: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """The first length-delimited field `want` in buf[pos:end], as (start, end)."""
    for num, start, stop in fields(buf, pos, end):
        if num == want:
            return start, stop
    return None


def unwrap(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[str, int, int]:
    """An envelope's kind and the span of the object it carries (Unknown.raw)."""
    end = len(buf) if end is None else end
    if buf[pos:pos + len(MAGIC)] != MAGIC:
        raise WireError(f"no protobuf envelope (starts {buf[pos:pos + 8]!r})")
    kind = ""
    for num, start, stop in fields(buf, pos + len(MAGIC), end):
        if num == 1:  # TypeMeta{apiVersion=1, kind=2}
            k = _field(buf, 2, start, stop)
            kind = _string(buf, *k) if k else ""
        elif num == 2:
            return kind, start, stop
    raise WireError("envelope without an object")


def list_meta(head: bytes) -> tuple[str, str]:
    """A LIST's (resourceVersion, continue) from the first bytes of its protobuf body."""
    _, start, stop = unwrap(head)
    meta = _field(head, 1, start, stop)
    if meta is None:
        return "", ""
    if meta[1] > len(head):
        raise WireError("ListMeta extends past the bytes read")
    rv = cont = ""
    for num, s, e in fields(head, *meta):
        if num == 2:
            rv = _string(head, s, e)
        elif num == 3:
            cont = _string(head, s, e)
    return rv, cont


def _object_meta(buf: bytes, start: int, stop: int) -> tuple[str, str, str]:
    """(namespace, name, resourceVersion) of the object in buf[start:stop]; ObjectMeta is
    read up to its resourceVersion (fields are in number order: name 1, namespace 3)."""
    meta = _field(buf, 1, start, stop)
    ns = name = ""
    if meta is not None:
        for num, s, e in fields(buf, *meta):
            if num == 1:
                name = _string(buf, s, e)
            elif num == 3:
                ns = _string(buf, s, e)
            elif num == 6:
                return ns, name, _string(buf, s, e)
    return ns, name, ""


def list_items(body: bytes) -> list[tuple[str, str, str]]:
    """Every item's (namespace, name, resourceVersion): what --decode reads of a protobuf LIST
    (the objects' own fields stay encoded: there is no schema here to decode them with)."""
    _, start, stop = unwrap(body)
    if stop > len(body):
        raise WireError("truncated list")
    return [_object_meta(body, s, e) for num, s, e in fields(body, start, stop) if num == 2]


@dataclass(frozen=True)
class Event:
    type: str
    resource_version: str = ""
    code: int = 0  # an ERROR event's Status code (410: the version is gone)
    message: str = ""


def watch_event(frame: bytes) -> Event:
    """One watch frame (without its length prefix)."""
    etype = ""
    raw: tuple[int, int] | None = None
    for num, start, stop in fields(frame):
        if num == 1:
            etype = _string(frame, start, stop)
        elif num == 2:  # RawExtension{raw=1}
            raw = _field(frame, 1, start, stop)
    if not etype or raw is None:
        raise WireError("watch frame without type or object")
    kind, start, stop = unwrap(frame, *raw)
    if kind == "Status":
        code, message = 0, ""
        for num, s, e in fields(frame, start, stop):
            if num == 6:
                code = s
            elif num == 3:
                message = _string(frame, s, e)
        return Event(etype, code=code, message=message)
    return Event(etype, resource_version=_object_meta(frame, start, stop)[2])


def frame_length(header: bytes) -> int:
    if len(header) != FRAME_HEADER:
        raise WireError("truncated frame header")
    return int.from_bytes(header, "big")
