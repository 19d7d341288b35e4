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
from typing import NamedTuple

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
    """The first length-delimited field `want` in buf[pos:end], as (start, end).
    The hot path (one call per step down to a version): no generator, one-byte fast paths."""
    end = len(buf) if end is None else min(end, len(buf))
    try:
        while pos < end:
            key = buf[pos]
            if key < 0x80:
                pos += 1
            else:
                key, pos = varint(buf, pos)
            wire_type = key & 7
            if wire_type == 2:
                n = buf[pos]
                if n < 0x80:
                    pos += 1
                else:
                    n, pos = varint(buf, pos)
                if key >> 3 == want:
                    return pos, pos + n
                pos += n
            elif wire_type == 0:
                _, pos = varint(buf, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                raise WireError(f"unsupported wire type {wire_type} (field {key >> 3})")
    except IndexError:
        raise WireError("truncated field") from None
    return None


def unwrap(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[int, int]:
    """The span of the object an envelope carries (Unknown.raw)."""
    if buf[pos : pos + len(MAGIC)] != MAGIC:
        raise WireError(f"no protobuf envelope (starts {buf[pos : pos + 8]!r})")
    raw = _field(buf, 2, pos + len(MAGIC), end)
    if raw is None:
        raise WireError("envelope without an object")
    return raw


def kind(buf: bytes, pos: int = 0, end: int | None = None) -> str:
    """The kind an envelope names (Unknown.typeMeta.kind)."""
    meta = _field(buf, 1, pos + len(MAGIC), end)
    k = meta and _field(buf, 2, *meta)
    return _string(buf, *k) if k else ""


def list_meta(head: bytes) -> tuple[str, str]:
    """A LIST's (resourceVersion, continue) from the first bytes of its protobuf body."""
    start, stop = unwrap(head)
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
    """(namespace, name, resourceVersion) of the object in buf[start:stop]."""
    meta = _field(buf, 1, start, stop)
    if meta is None:
        return "", "", ""
    name, ns, rv = (_field(buf, f, *meta) for f in (1, 3, 6))
    return (
        _string(buf, *ns) if ns else "",
        _string(buf, *name) if name else "",
        _string(buf, *rv) if rv else "",
    )


def _resource_version(buf: bytes, start: int, stop: int) -> str:
    meta = _field(buf, 1, start, stop)
    rv = meta and _field(buf, 6, *meta)
    return _string(buf, *rv) if rv else ""


def list_items(body: bytes) -> list[tuple[str, str, str]]:
    """Every item's (namespace, name, resourceVersion): what --decode reads of a protobuf LIST
    (the objects' own fields stay encoded: there is no schema here to decode them with)."""
    start, stop = unwrap(body)
    if stop > len(body):
        raise WireError("truncated list")
    return [_object_meta(body, s, e) for num, s, e in fields(body, start, stop) if num == 2]


class Event(NamedTuple):  # a tuple: one is made per watch event
    type: str
    resource_version: str = ""
    code: int = 0  # an ERROR event's Status code (410: the version is gone)
    message: str = ""


def watch_event(frame: bytes) -> Event:
    """One watch frame (without its length prefix); only what an informer needs is read."""
    etype = _field(frame, 1)
    obj = _field(frame, 2)
    raw = obj and _field(frame, 1, *obj)  # RawExtension.raw
    if not etype or not raw:
        raise WireError("watch frame without type or object")
    t = _string(frame, *etype)
    start, stop = unwrap(frame, *raw)
    if t == "ERROR" and kind(frame, *raw) == "Status":
        code, message = 0, ""
        for num, s, e in fields(frame, start, stop):
            if num == 6:
                code = s
            elif num == 3:
                message = _string(frame, s, e)
        return Event(t, code=code, message=message)
    return Event(t, resource_version=_resource_version(frame, start, stop))


def frame_length(header: bytes) -> int:
    if len(header) != FRAME_HEADER:
        raise WireError("truncated frame header")
    return int.from_bytes(header, "big")
