"""Learn an agent profile from a kube-apiserver audit log: what the agent really asked for.

Pure: audit events in (`audit.k8s.io/v1` Event JSON lines, any level from Metadata up), one
`AgentProfile` and its provenance out. The derivation:

- Each request counts once (its ResponseComplete event, or whichever stage the log has).
- Requests are kept when their user agent matches a pattern (and, optionally, their
  authenticated user another); they are grouped by client: source IP, user (the impersonated
  one if any) and credential (a bound token's `credential-id`, distinct per pod even when all
  pods share one ServiceAccount). A client whose node-scoped requests name k nodes is k agents
  sharing one credential.
- Collection LISTs and WATCHes are grouped into targets: group, version, resource, namespace,
  label and field selectors, with the client's own node taken out of the field selector
  (`spec.nodeName=` for pods, `metadata.name=` for nodes, `involvedObject.name=` for events):
  that is scope `node`.
- A target with WATCHes is an informer: its LISTs that a WATCH of the same client follows
  within seconds are the informer's (the first one per client gives resourceVersion and
  limit); others are polls. Poll interval and jitter come from the spacing of one client's
  LISTs (end of one to the start of the next: both agents sleep after a list completes);
  uniform jitter of +-j has standard deviation j/sqrt(3) of the interval.
- Watch timeouts: client-go draws timeoutSeconds uniformly from [t, t(1+j)); the bounds are
  estimated from the smallest and largest seen, widened by the expected gap (n samples).
- Identity: impersonation if requests are impersonated, one ServiceAccount per agent if the
  agents' users differ, else one shared ServiceAccount.
- Anything else (GETs, writes, subresources, parameters the schema cannot say) is listed in
  the output under a comment with counts, never dropped silently.

The audit log does not record the Accept header, so `content_type` cannot be learned: it is
whatever the caller says (json by default) and the file says so.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml

from loadtest import config
from loadtest.agents.profile import AgentProfile, Poll, Watch
from loadtest.errors import ConfigError

# A WATCH this soon after a LIST's end (same client, same target) makes it an informer's list.
INFORMER_GAP_S = 5.0
CREDENTIAL_EXTRAS = (
    "authentication.kubernetes.io/credential-id",
    "authentication.kubernetes.io/pod-uid",
)
NODE_EXTRA = "authentication.kubernetes.io/node-name"
# Query parameters the profile schema models (others make a request unmodelable).
MODELLED_PARAMS = {
    "fieldSelector",
    "labelSelector",
    "resourceVersion",
    "limit",
    "continue",
    "watch",
    "allowWatchBookmarks",
    "timeoutSeconds",
    "sendInitialEvents",
    "resourceVersionMatch",
}
STAGE_RANK = {"ResponseComplete": 0, "Panic": 1, "RequestReceived": 2, "ResponseStarted": 3}


@dataclass(frozen=True)
class Request:
    """One API request as the audit log saw it (one line chosen among its stages)."""

    line: int
    verb: str
    path: str
    query: dict[str, str]
    group: str
    version: str
    resource: str
    namespace: str
    name: str
    subresource: str
    user: str  # authenticated user
    effective_user: str  # impersonated user if any, else user
    impersonated: bool
    credential: str
    node_extra: str
    source: str
    user_agent: str
    start: float
    end: float | None  # None: only the request's start was logged


def _time(text: Any, lineno: int, what: str) -> float:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        raise ConfigError(f"line {lineno}: {what} is not a timestamp: {str(text)[:40]!r}") from None


def _parse_event(ev: Any, lineno: int) -> tuple[str, str, Request]:
    """(auditID, stage, request) of one event; a missing field is one ConfigError line."""
    if not isinstance(ev, dict) or ev.get("kind") != "Event":
        raise ConfigError(f"line {lineno}: not an audit.k8s.io Event")
    try:
        audit_id, stage, uri, verb = (
            str(ev[k]) for k in ("auditID", "stage", "requestURI", "verb")
        )
        user = ev["user"]
        received = ev["requestReceivedTimestamp"]
    except KeyError as e:
        raise ConfigError(f"line {lineno}: audit event without {e.args[0]}") from None
    ref = ev.get("objectRef") or {}
    imp = ev.get("impersonatedUser") or {}
    extra = user.get("extra") or {}
    cred = next((str(extra[k][0]) for k in CREDENTIAL_EXTRAS if extra.get(k)), "")
    u = urlsplit(uri)
    end = (
        _time(ev["stageTimestamp"], lineno, "stageTimestamp")
        if stage == "ResponseComplete" and ev.get("stageTimestamp")
        else None
    )
    req = Request(
        line=lineno,
        verb=verb,
        path=u.path,
        query=dict(parse_qsl(u.query, keep_blank_values=True)),
        group=str(ref.get("apiGroup", "")),
        version=str(ref.get("apiVersion", "")),
        resource=str(ref.get("resource", "")),
        namespace=str(ref.get("namespace", "")),
        name=str(ref.get("name", "")),
        subresource=str(ref.get("subresource", "")),
        user=str(user.get("username", "")),
        effective_user=str(imp.get("username") or user.get("username", "")),
        impersonated=bool(imp.get("username")),
        credential=cred,
        node_extra=str((extra.get(NODE_EXTRA) or [""])[0]),
        source=str((ev.get("sourceIPs") or [""])[0]),
        user_agent=str(ev.get("userAgent", "")),
        start=_time(received, lineno, "requestReceivedTimestamp"),
        end=end,
    )
    return audit_id, stage, req


def parse_events(lines: Iterable[str]) -> list[Request]:
    """Requests from audit JSON lines, each once; bad input is one ConfigError naming the line."""
    best: dict[str, tuple[int, Request]] = {}
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            ev = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"line {lineno}: not JSON ({e.msg})") from None
        audit_id, stage, req = _parse_event(ev, lineno)
        rank = STAGE_RANK.get(stage, 9)
        if audit_id not in best or rank < best[audit_id][0]:
            # keep the first line's start time: every stage repeats requestReceivedTimestamp
            best[audit_id] = (rank, req)
    return sorted((r for _, r in best.values()), key=lambda r: (r.start, r.line))


def read_audit_log(path: Path) -> list[Request]:
    """An audit log file (plain or .gz); errors are one line naming the file and line."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            return parse_events(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text audit log") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


# --- targets ---------------------------------------------------------------------------------

NodeKey = Literal["", "spec.nodeName", "metadata.name", "involvedObject.name"]


@dataclass(frozen=True)
class Shape:
    """A request's target without the client's node: what a Watch or Poll says."""

    group: str
    version: str
    resource: str
    namespace: str
    label_selector: str
    field_selector: str  # without the node part
    node_key: NodeKey  # "" when the request names no node

    def describe(self) -> str:
        api = f"{self.group}/{self.version}" if self.group else self.version
        where = f" in {self.namespace}" if self.namespace else ""
        sel = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        node = f" [{self.node_key}=<node>]" if self.node_key else ""
        return f"{api} {self.resource}{where}{node}{' ' + sel if sel else ''}"


def split_node(resource: str, field_selector: str) -> tuple[NodeKey, str, str]:
    """(node key, node, the rest of the selector) for a selector naming one node."""
    parts = [p for p in field_selector.split(",") if p]
    keys: dict[str, NodeKey] = {
        "pods": "spec.nodeName",
        "nodes": "metadata.name",
        "events": "involvedObject.name",
    }
    key = keys.get(resource)
    if key is None:
        return "", "", field_selector
    if resource == "events" and "involvedObject.kind=Node" not in parts:
        return "", "", field_selector
    for p in parts:
        k, sep, v = p.partition("=")
        if sep and k == key and not v.startswith("="):
            rest = [
                x
                for x in parts
                if x != p and not (resource == "events" and x == "involvedObject.kind=Node")
            ]
            return key, v, ",".join(rest)
    return "", "", field_selector


def _unmodelled_reason(r: Request) -> str | None:
    """Why a request is outside the profile schema, or None when it is a LIST or WATCH."""
    what = (
        f"{r.verb.upper()} {r.group + '/' if r.group else ''}{r.resource or r.path}"
        f"{'/' + r.subresource if r.subresource else ''}"
    )
    if r.verb not in ("list", "watch"):
        return what
    # A collection's LIST/WATCH with fieldSelector=metadata.name=X has objectRef.name X too.
    if r.subresource or (r.name and not r.path.rstrip("/").endswith("/" + r.resource)):
        return f"{what} (one object)"
    if not re.fullmatch(r"[a-z][a-z0-9.]*", r.resource) or not r.version:
        return f"{what} (not a resource)"
    extra = sorted(set(r.query) - MODELLED_PARAMS)
    if extra:
        return f"{what} (parameters {', '.join(extra)})"
    if r.query.get("resourceVersionMatch") == "Exact":
        return f"{what} (resourceVersionMatch=Exact)"
    return None


# --- the derivation --------------------------------------------------------------------------


@dataclass
class Learned:
    """A learned profile and where it came from."""

    profile: AgentProfile
    source: str
    pattern: str
    first: float | None
    last: float | None
    agents: int
    clients: int
    used: int
    left_out: Counter[str]
    other_requests: int  # requests of other user agents or users
    notes: list[str] = field(default_factory=list)

    def header(self) -> str:
        def ts(t: float | None) -> str:
            return (
                datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
                if t is not None
                else "-"
            )

        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        lines = [
            f"Learned by `loadtest learn` from {self.source}",
            f"user agent pattern: {self.pattern}",
            f"time span: {ts(self.first)} .. {ts(self.last)} ({span:.0f} s)",
            f"agents seen: {self.agents} ({self.clients} clients)",
            f"requests used: {self.used}; left out: {sum(self.left_out.values())} "
            f"(below); other clients' requests ignored: {self.other_requests}",
            *self.notes,
        ]
        return "".join(f"# {x}\n" for x in lines)

    def to_yaml(self) -> str:
        body = yaml.safe_dump(
            self.profile.model_dump(mode="json", exclude_defaults=True, exclude={"version"}),
            sort_keys=False,
            width=100,
        )
        out = self.header() + "version: 1\n" + body
        out += "# Requests it cannot model (left out), with counts:\n"
        if not self.left_out:
            out += "#   (none)\n"
        for what, n in sorted(self.left_out.items(), key=lambda x: (-x[1], x[0])):
            out += f"#   {n:6d}  {what}\n"
        return out


@dataclass
class _Agent:
    """One agent's requests per shape, in time order."""

    client: tuple[str, str, str]
    node: str
    by_shape: dict[Shape, list[Request]] = field(default_factory=lambda: defaultdict(list))


def _mode(xs: Iterable[Any], default: Any) -> Any:
    c = Counter(xs)
    return c.most_common(1)[0][0] if c else default


def _uniform_bounds(xs: list[float]) -> tuple[float, float]:
    """Unbiased bounds of a uniform distribution from n samples (min/max widened)."""
    lo, hi = min(xs), max(xs)
    gap = (hi - lo) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return max(lo - gap, 1.0), hi + gap


def learn(
    requests: list[Request],
    pattern: str,
    name: str,
    source: str = "audit log",
    user_pattern: str | None = None,
    content_type: Literal["json", "protobuf"] = "json",
) -> Learned:
    """Derive one profile from the requests of the clients matching `pattern`."""
    try:
        ua = re.compile(pattern)
        users = re.compile(user_pattern) if user_pattern else None
    except re.error as e:
        raise ConfigError(f"bad pattern: {e}") from None
    mine = [
        r for r in requests if ua.search(r.user_agent) and (users is None or users.search(r.user))
    ]
    if not mine:
        raise ConfigError(
            f"{source}: no requests with a user agent matching {pattern!r}"
            + (f" and a user matching {user_pattern!r}" if user_pattern else "")
            + f" (of {len(requests)} requests)"
        )
    left_out: Counter[str] = Counter()
    agents: dict[tuple[tuple[str, str, str], str], _Agent] = {}
    nodes_of: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    node_values: dict[Shape, dict[tuple[str, str, str], set[str]]] = defaultdict(
        lambda: defaultdict(set)
    )
    clients: set[tuple[str, str, str]] = set()
    for r in mine:
        client = (r.source, r.effective_user, r.credential)
        clients.add(client)
        reason = _unmodelled_reason(r)
        if reason:
            left_out[reason] += 1
            continue
        key, node, rest = split_node(r.resource, r.query.get("fieldSelector", ""))
        shape = Shape(
            r.group, r.version, r.resource, r.namespace, r.query.get("labelSelector", ""), rest, key
        )
        node = (node or r.node_extra) if key else ""
        if key:
            nodes_of[client].add(node)
            node_values[shape][client].add(node)
        a = agents.setdefault((client, node), _Agent(client, node))
        a.by_shape[shape].append(r)
    notes: list[str] = []
    shared_node = _shared_node_shapes(node_values, notes)
    merged = {c: len(n) for c, n in nodes_of.items() if len(n) > 1}
    n_agents = sum(max(1, len(nodes_of.get(c, ()))) for c in {a.client for a in agents.values()})
    if merged:
        notes.append(
            f"{len(merged)} client(s) shared one credential across "
            f"{sum(merged.values())} nodes: counted one agent per node"
        )

    watches: list[Watch] = []
    polls: list[Poll] = []
    shapes = list(dict.fromkeys(s for a in agents.values() for s in a.by_shape))
    shapes.sort(
        key=lambda s: min(a.by_shape[s][0].start for a in agents.values() if s in a.by_shape)
    )
    used = 0
    for shape in shapes:
        per_agent = [(a, a.by_shape[shape]) for a in agents.values() if shape in a.by_shape]
        scope_args = _scope(shape, shared_node.get(shape), content_type)
        watched = any(r.verb == "watch" for _, rs in per_agent for r in rs)
        informer_lists: list[Request] = []
        poll_runs: list[tuple[int, list[tuple[float, float]]]] = []
        watch_reqs: list[Request] = []
        poll_first: list[Request] = []
        for a, rs in per_agent:
            lists = _list_runs(rs)
            run_times = []
            for first_page, end in lists:
                if watched and _followed_by_watch(rs, end):
                    informer_lists.append(first_page)
                else:
                    poll_first.append(first_page)
                    run_times.append((first_page.start, end))
            if run_times:
                poll_runs.append((merged.get(a.client, 1) if not shape.node_key else 1, run_times))
            watch_reqs += [r for r in rs if r.verb == "watch"]
            used += len(rs)
        if watched:
            watches.append(_watch(shape, scope_args, informer_lists, watch_reqs, notes))
        if poll_first:
            polls.append(_poll(shape, scope_args, poll_first, poll_runs, notes))
    ids = {a.client[1] for a in agents.values()}
    if any(r.impersonated for a in agents.values() for rs in a.by_shape.values() for r in rs):
        identity = "impersonate"
    elif len(ids) > 1:
        identity = "serviceaccount-per-agent"
    else:
        identity = "shared-serviceaccount"
        if not next(iter(ids), "").startswith("system:serviceaccount:"):
            notes.append(f"the agents' user {next(iter(ids), '')!r} is not a ServiceAccount")
    notes.append(
        f"content_type: {content_type} (audit logs do not record the Accept header; "
        "set with --content-type)"
    )
    notes.append("backoff: client-go defaults (errors and retries are not learned)")
    user_agent = _mode((r.user_agent for r in mine), "loadtest-agent/0")
    profile = config.parse(
        AgentProfile,
        {
            "name": name,
            "description": f"learned from the audit log ({n_agents} agents)",
            "user_agent": user_agent,
            "identity": identity,
            "watches": [w.model_dump() for w in watches],
            "polls": [p.model_dump() for p in polls],
        },
        f"learned profile {name!r}",
    )
    starts = [r.start for r in mine]
    return Learned(
        profile=profile,
        source=source,
        pattern=pattern,
        first=min(starts),
        last=max([r.end or r.start for r in mine]),
        agents=n_agents,
        clients=len(clients),
        used=used,
        left_out=left_out,
        other_requests=len(requests) - len(mine),
        notes=notes,
    )


def _shared_node_shapes(
    values: dict[Shape, dict[tuple[str, str, str], set[str]]], notes: list[str]
) -> dict[Shape, str]:
    """Shapes whose 'node' is one fixed name for several clients: a literal, not scope node."""
    out = {}
    for shape, per_client in values.items():
        names = set().union(*per_client.values())
        if len(per_client) > 1 and len(names) == 1:
            out[shape] = next(iter(names))
            notes.append(
                f"{shape.describe()}: every client names node {next(iter(names))!r}: "
                "kept as a cluster-scoped field selector"
            )
    return out


def _scope(shape: Shape, shared_node: str | None, content_type: str) -> dict[str, Any]:
    fields = shape.field_selector
    scope = "cluster"
    if shared_node is not None:
        literal = f"{shape.node_key}={shared_node}"
        if shape.resource == "events":
            literal = f"involvedObject.kind=Node,{literal}"
        fields = ",".join(x for x in (literal, fields) if x)
    elif shape.node_key:
        scope = "node"
    if shape.namespace and scope != "node":
        scope = "namespace"
    d: dict[str, Any] = {
        "resource": shape.resource,
        "group": shape.group,
        "api_version": shape.version,
        "scope": scope,
        "namespace": shape.namespace or None,
        "label_selector": shape.label_selector,
        "field_selector": fields,
        "content_type": content_type,
    }
    return d


def _list_runs(rs: list[Request]) -> list[tuple[Request, float]]:
    """Each full LIST (first page and its continue pages) as (first page, end of last page)."""
    out: list[tuple[Request, float]] = []
    for r in rs:
        if r.verb != "list":
            continue
        end = r.end if r.end is not None else r.start
        if r.query.get("continue") and out:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((r, end))
    return out


def _followed_by_watch(rs: list[Request], end: float) -> bool:
    return any(r.verb == "watch" and end - 0.5 <= r.start <= end + INFORMER_GAP_S for r in rs)


def _rv(r: Request) -> Literal["", "0"] | None:
    rv = r.query.get("resourceVersion", "")
    return rv if rv in ("", "0") else None  # type: ignore[return-value]


def _limit(r: Request) -> int:
    try:
        return max(0, int(r.query.get("limit", "0") or 0))
    except ValueError:
        return 0


def _watch(
    shape: Shape, base: dict[str, Any], lists: list[Request], ws: list[Request], notes: list[str]
) -> Watch:
    d = dict(base)
    first_lists = _first_per_client(lists)
    rvs = [rv for rv in map(_rv, first_lists) if rv is not None]
    d["list_resource_version"] = _mode(rvs, "0")
    d["page_size"] = _mode(map(_limit, first_lists), 500)
    d["watch_list"] = any(r.query.get("sendInitialEvents") == "true" for r in ws)
    d["bookmarks"] = _mode((r.query.get("allowWatchBookmarks") == "true" for r in ws), True)
    timeouts = [
        float(r.query["timeoutSeconds"]) for r in ws if r.query.get("timeoutSeconds", "").isdigit()
    ]
    if timeouts:
        lo, hi = _uniform_bounds(timeouts)
        d["timeout_seconds"] = max(1, min(3600, round(lo)))
        d["timeout_jitter"] = round(max(0.0, hi / d["timeout_seconds"] - 1), 2)
    else:
        notes.append(f"{shape.describe()}: watches without timeoutSeconds: default kept")
    if not first_lists and not d["watch_list"]:
        notes.append(
            f"{shape.describe()}: no initial LIST seen (started before the log?): "
            "list defaults kept"
        )
    return Watch.model_validate(d)


def _first_per_client(rs: list[Request]) -> list[Request]:
    seen: dict[tuple[str, str, str, str], Request] = {}
    for r in sorted(rs, key=lambda r: r.start):
        seen.setdefault(
            (r.source, r.effective_user, r.credential, r.query.get("fieldSelector", "")), r
        )
    return list(seen.values())


def _poll(
    shape: Shape,
    base: dict[str, Any],
    firsts: list[Request],
    runs: list[tuple[int, list[tuple[float, float]]]],
    notes: list[str],
) -> Poll:
    d = dict(base)
    rvs = [rv for rv in map(_rv, firsts) if rv is not None]
    if len(rvs) < len(firsts):
        notes.append(
            f"{shape.describe()}: {len(firsts) - len(rvs)} poll LISTs with an exact "
            "resourceVersion: learned from the others"
        )
    d["list_resource_version"] = _mode(rvs, "")
    d["page_size"] = _mode(map(_limit, firsts), 0)
    gaps: list[float] = []
    merged_rates: list[float] = []
    for k, times in runs:
        if len(times) < 2:
            continue
        if k == 1:
            gaps += [b[0] - a[1] for a, b in zip(times, times[1:], strict=False)]
        elif len(times) > k:  # k agents in one stream: only the mean period is visible
            merged_rates.append(k * (times[-1][0] - times[0][0]) / (len(times) - k))
    if gaps:
        mean = statistics.fmean(gaps)
        sd = statistics.pstdev(gaps) if len(gaps) > 1 else 0.0
        d["interval_seconds"] = round(max(mean, 0.001), 3)
        d["jitter"] = round(min(1.0, math.sqrt(3) * sd / mean), 2) if mean > 0 else 0.0
    elif merged_rates:
        d["interval_seconds"] = round(statistics.fmean(merged_rates), 3)
        notes.append(
            f"{shape.describe()}: agents shared one credential: interval from the "
            "rate, jitter not observable (0.1 kept)"
        )
    else:
        span = max(t[-1][1] for _, t in runs) - min(t[0][0] for _, t in runs) if runs else 0
        d["interval_seconds"] = round(max(span, 1.0), 3)
        notes.append(
            f"{shape.describe()}: one LIST per client: interval unknown, set to the "
            "log's span (a lower bound; record for longer)"
        )
    return Poll.model_validate(d)


def write(learned: Learned, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(learned.to_yaml())
    return out
