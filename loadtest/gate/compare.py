"""Compare two agent versions: cost per agent and latency, with intervals, against budgets.

A comparison is rounds of baseline and candidate run back to back on one cluster and one
inventory, the first of the two alternating each round (ABBA), so drift (a warming cache, a
neighbour's benchmark) hits both sides alike.
Statistics are paired over rounds: per round the difference candidate - baseline, then a
Student t-interval (95 %) on the mean difference; one round gives a point estimate only.

Budgets are parsed rules in the spirit of pytest-benchmark's `p99:10%`:

    apiserver_cpu:+10%     candidate may cost at most 10 % more than the baseline
    p99_list:+0.5          at most 0.5 (the metric's unit) more
    dns_p99_ms:<=100       at most 100, whatever the baseline did

Results from different environments are compared, but never silently: every difference in
machine, tools, cluster or inventory becomes a warning in the verdict.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from loadtest.errors import ConfigError
from loadtest.measurements.apiserver import ApiServerSummary, LatencyRow
from loadtest.measurements.client import ClientSummary
from loadtest.results import COMPARABLE
from loadtest.run.record import RecordLike, RunRecord, coerce, load_record, run_profile

Values = dict[str, float | None]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    what: str


# Every metric is "lower is better"; budgets bound how much worse the candidate may be.
METRICS = {
    m.name: m
    for m in (
        Metric("requests_per_agent_s", "req/s", "requests one agent sends per second"),
        Metric("bytes_per_agent_s", "B/s", "response bytes one agent receives per second"),
        Metric("apiserver_cpu", "cores", "API server CPU during the load (whole server)"),
        Metric("apiserver_cpu_per_agent", "cores", "API server CPU above idle, per agent"),
        Metric(
            "apf_seats_per_agent",
            "seats",
            "APF seats held per agent on average (seat-seconds per second of load)",
        ),
        Metric("p99_list", "s", "worst LIST p99 at the API server, incl. APF queue wait"),
        Metric("p99_mutating", "s", "worst mutating p99 at the API server"),
        Metric("client_p99_ms", "ms", "worst p99 an agent saw for any request name"),
        Metric("throttled_ratio", "", "429 responses / all API server responses"),
        Metric("dns_p99_ms", "ms", "cluster DNS probe p99"),
        Metric("dns_error_ratio", "", "cluster DNS probe failures / probes"),
    )
}
DEFAULT_BUDGETS = ("apiserver_cpu:+10%", "p99_list:+20%")


# --- cost of one run -----------------------------------------------------------------------


def load_window(run_dir: Path) -> tuple[float, float] | None:
    """Epoch seconds between which agents were running (Locust's history, users > 0)."""
    hist = run_dir / "agents" / "locust_stats_history.csv"
    if not hist.exists():
        return None
    with hist.open() as f:
        ts = [
            int(r["Timestamp"])
            for r in csv.DictReader(f)
            if r["Name"] == "Aggregated" and int(r["User Count"]) > 0
        ]
    return (float(ts[0]), float(ts[-1])) if len(ts) >= 2 else None


def scrape_origin(run_dir: Path, summary: RecordLike) -> float | None:
    """Epoch time of the first API server scrape: the zero of the summary's timeseries."""
    record = coerce(summary)
    api = record.measurements.apiserver
    t = api.origin_t if api else None
    if t:
        return float(t)
    raw = run_dir / "raw" / "apiserver.jsonl"
    if raw.exists():
        with raw.open() as f:
            first = f.readline()
        if first:
            return float(json.loads(first)["t"])
    # The stage is stamped right after the first scrape (within a fraction of a second).
    t = record.stages.get("measurements-started", {}).get("t")
    return float(t) if t else None


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def cpu_in_window(
    series: list[dict[str, Any]], origin: float, window: tuple[float, float]
) -> tuple[float | None, float | None]:
    """(cores during the window, cores outside it) from per-interval CPU rates."""
    inside = outside = 0.0
    t_in = t_out = 0.0
    prev = 0.0
    for p in series:
        a, b = origin + prev, origin + p["t"]
        prev = p["t"]
        ov = _overlap(a, b, *window)
        inside += p["cpu_cores"] * ov
        t_in += ov
        rest = (b - a) - ov
        outside += p["cpu_cores"] * rest
        t_out += rest
    return (inside / t_in if t_in > 0 else None, outside / t_out if t_out > 0 else None)


def gauge_series(raw: Path, name: str) -> list[tuple[float, float]]:
    """(t, sum of gauge `name` over non-exempt priority levels) per successful scrape.

    Streams the raw file: a record is either a full scrape ("samples", older runs) or the
    series changed since the same server's last one ("changed"); only `name` is kept, so it
    stays cheap. With several API servers, each point sums every server's latest value.
    """
    state: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    out = []
    with raw.open() as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            server = rec.get("server", "")
            if "samples" in rec:
                state = {k: v for k, v in state.items() if k[0] != server}
            rows = rec.get("samples") or rec.get("changed")
            if rows is None:
                continue
            for n, lb, v in rows:
                if n == name:
                    state[(server, tuple((k, val) for k, val in lb))] = v
            out.append(
                (
                    rec["t"],
                    sum(
                        v
                        for (_, lb), v in state.items()
                        if dict(lb).get("priority_level") != "exempt"
                    ),
                )
            )
    return out


def seat_seconds(run_dir: Path, window: tuple[float, float]) -> float | None:
    """APF seat-seconds of non-exempt levels in the window: the sampled executing-seats gauge
    integrated over time (trapezoids; a 5 s sample can miss short peaks: an estimate)."""
    raw = run_dir / "raw" / "apiserver.jsonl"
    if not raw.exists():
        return None
    series = gauge_series(raw, "apiserver_flowcontrol_current_executing_seats")
    return sum(
        (a[1] + b[1]) / 2 * _overlap(a[0], b[0], *window)
        for a, b in zip(series, series[1:], strict=False)
    )


def above_idle(
    busy: float | None, idle: dict[str, Any] | None, agents: int
) -> tuple[float | None, str]:
    """API server cores per agent above the run's idle window, or None and why not: a load
    window cheaper than idle says the baseline was taken at a busier moment (or noise
    swamps the agents' cost); such a number is not fitted or compared."""
    if busy is None or not agents:
        return None, ""
    if not idle or idle.get("cpu_cores") is None:
        why = (idle or {}).get("error", "the run has no idle window")
        return None, f"API server CPU above idle not measurable: {why}"
    cost = busy - idle["cpu_cores"]
    if cost < 0:
        return None, (
            f"API server CPU above idle not measurable: {busy:.3f} cores under "
            f"load < {idle['cpu_cores']:.3f} idle"
        )
    return cost / agents, ""


def _worst(rows: list[LatencyRow], verbs: frozenset[str] | set[str]) -> float | None:
    vals = [
        r.p99
        for r in rows
        if r.verb in verbs
        and r.p99 is not None
        and r.metric == "apiserver_request_duration_seconds"
    ]
    return max(vals) if vals else None


def run_costs(run_dir: Path) -> tuple[Values, list[str]]:
    """The comparison metrics of one results folder, and notes on what could not be had."""
    from loadtest.verdict.slo import MUTATING_VERBS

    r = load_record(run_dir)
    m = r.measurements
    api = m.apiserver or ApiServerSummary()
    client = m.client or ClientSummary()
    agents = r.agents
    notes: list[str] = []
    window = load_window(run_dir)
    load_s = (window[1] - window[0]) if window else (r.config.duration_s if r.config else None)
    if window is None:
        notes.append("no Locust history: load window taken as the configured duration")
    v: Values = dict.fromkeys(METRICS)
    if agents and load_s:
        v["requests_per_agent_s"] = client.requests / agents / load_s
        sent = client.agents.bytes
        v["bytes_per_agent_s"] = sum(sent.values()) / agents / load_s if sent else None
    origin = scrape_origin(run_dir, r)
    if api.timeseries and origin and window:
        busy, _ = cpu_in_window(api.timeseries, origin, window)
        v["apiserver_cpu"] = busy
        v["apiserver_cpu_per_agent"], why = above_idle(busy, api.idle, agents)
        notes += [why] if why else []
    elif api.process is not None:
        v["apiserver_cpu"] = api.process.cpu_cores_avg
        notes.append("API server CPU averaged over the whole measurement, not the load")
    if window and agents:
        seats = seat_seconds(run_dir, window)
        if seats is None:
            notes.append("APF seats need raw/apiserver.jsonl")
        else:
            v["apf_seats_per_agent"] = seats / (window[1] - window[0]) / agents
    rows = api.latency or []
    v["p99_list"] = _worst(rows, {"LIST"})
    v["p99_mutating"] = _worst(rows, MUTATING_VERBS)
    client_p99 = [r.p99_ms for r in client.by_name if r.p99_ms is not None]
    v["client_p99_ms"] = max(client_p99) if client_p99 else None
    req = api.requests
    if req and req.total:
        v["throttled_ratio"] = req.throttled_429 / req.total
    dns = m.dns
    if dns is not None and "p99_ms" in dns.model_fields_set:  # the probe measured
        v["dns_p99_ms"] = dns.p99_ms
        v["dns_error_ratio"] = dns.error_rate if "error_rate" in dns.model_fields_set else None
    return v, notes


# --- environments -------------------------------------------------------------------------


def fingerprint(summary: RecordLike) -> dict[str, Any]:
    """What must match for two runs to be comparable (the commit is reported, not required)."""
    record = coerce(summary)
    env, cfg, cluster = record.environment, record.config, record.cluster
    flat = {k: env.get(k) for k in COMPARABLE}
    flat.update({f"tools.{k}": v for k, v in (env.get("tools") or {}).items()})
    flat.update(
        {
            "cluster.provider": cluster.get("provider"),
            "cluster.version": cluster.get("version"),
            "inventory": cfg.inventory.model_dump() if cfg else None,
            "agents": cfg.agents if cfg else None,
            "duration_s": cfg.duration_s if cfg else None,
            "shape": cfg.shape if cfg else None,
        }
    )
    return flat


def environment_warnings(a: Sequence[RecordLike], b: Sequence[RecordLike]) -> list[str]:
    """One line per field that differs anywhere among the runs of both sides."""
    prints = [fingerprint(s) for s in (*a, *b)]
    out = []
    for key in sorted({k for p in prints for k in p}):
        seen = {repr(p.get(key)) for p in prints}
        if len(seen) > 1:
            out.append(f"environments differ in {key}: {', '.join(sorted(seen))}")
    commits = {coerce(s).environment.get("commit") for s in (*a, *b)}
    if len(commits) > 1:
        out.append(f"harness commits differ: {', '.join(sorted(str(c) for c in commits))}")
    return out


# --- budgets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    metric: str
    kind: Literal["relative", "absolute", "ceiling"]
    limit: float
    text: str


_RULE = re.compile(r"^(?P<metric>[a-z0-9_]+):(?P<op>\+|<=)?(?P<num>\d+(\.\d+)?)(?P<pct>%)?$")


def parse_budget(text: str) -> Budget:
    """`metric:+10%`, `metric:10%`, `metric:+0.5` or `metric:<=100`; one-line error otherwise."""
    t = text.strip().replace(" ", "")
    m = _RULE.match(t)
    if not m:
        raise ConfigError(
            f"budget {text!r}: expected METRIC:+N%, METRIC:+N or METRIC:<=N "
            "(e.g. apiserver_cpu:+10%)"
        )
    if m["metric"] not in METRICS:
        raise ConfigError(
            f"budget {text!r}: unknown metric {m['metric']!r} (known: {', '.join(METRICS)})"
        )
    if m["op"] == "<=" and m["pct"]:
        raise ConfigError(f"budget {text!r}: a ceiling is absolute; drop the %")
    num = float(m["num"])
    if m["op"] == "<=":
        return Budget(m["metric"], "ceiling", num, t)
    if m["pct"]:
        return Budget(m["metric"], "relative", num / 100, t)
    return Budget(m["metric"], "absolute", num, t)


def parse_budgets(texts: Sequence[str]) -> list[Budget]:
    """All rules; every bad one is reported, one per line, in a single error."""
    out, errors = [], []
    for t in texts:
        try:
            out.append(parse_budget(t))
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("\n".join(errors))
    return out


# --- statistics ---------------------------------------------------------------------------

# Student t, two-sided 95 %, by degrees of freedom; past 30 the normal value is close enough.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


@dataclass
class Interval:
    """Mean of a sample and its 95 % t-interval (None for one value)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> Interval:
        mean = statistics.fmean(xs)
        if len(xs) < 2:
            return cls(mean, None, None, len(xs))
        half = t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
        return cls(mean, mean - half, mean + half, len(xs))


@dataclass
class MetricComparison:
    metric: str
    baseline: Interval
    candidate: Interval
    diff: Interval  # paired: candidate - baseline per round

    # Relative to the baseline's magnitude, so a positive change is worse whatever the sign
    # of the baseline (cores above idle can be negative when idle was busier).
    @property
    def relative(self) -> float | None:
        return self.diff.mean / abs(self.baseline.mean) if self.baseline.mean else None

    def relative_bounds(self) -> tuple[float | None, float | None]:
        """The difference's interval over the baseline's magnitude (taken as exact)."""
        b = abs(self.baseline.mean)
        if not b or self.diff.low is None or self.diff.high is None:
            return None, None
        return self.diff.low / b, self.diff.high / b


def compare_values(base: Sequence[Values], cand: Sequence[Values]) -> dict[str, MetricComparison]:
    """Per metric, over rounds paired by position; a round missing either side is left out."""
    out = {}
    for name in METRICS:
        pairs = [
            (a[name], b[name])
            for a, b in zip(base, cand, strict=False)
            if a.get(name) is not None and b.get(name) is not None
        ]
        if not pairs:
            continue
        xs = [float(a) for a, _ in pairs]  # type: ignore[arg-type]
        ys = [float(b) for _, b in pairs]  # type: ignore[arg-type]
        out[name] = MetricComparison(
            name,
            Interval.of(xs),
            Interval.of(ys),
            Interval.of([y - x for x, y in zip(xs, ys, strict=True)]),
        )
    return out


# --- verdict ------------------------------------------------------------------------------


@dataclass
class BudgetResult:
    budget: str
    status: Literal["pass", "fail", "error"]
    reason: str


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}{(' ' + unit) if unit else ''}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _ci(lo: float | None, hi: float | None, fmt: Callable[[float | None], str]) -> str:
    return "" if lo is None else f" (95% CI {fmt(lo)}..{fmt(hi)})"


def check_budget(b: Budget, c: MetricComparison | None) -> BudgetResult:
    """Fail when the point estimate is over budget; the interval says how sure that is."""
    unit = METRICS[b.metric].unit
    if c is None:
        return BudgetResult(b.text, "error", f"{b.metric} was not measured on both sides")
    if b.kind == "ceiling":
        value, limit, low = c.candidate.mean, b.limit, c.candidate.low
        shown = (
            f"candidate {_fmt(value, unit)}{_ci(c.candidate.low, c.candidate.high, _fmt)}"
            f" vs ceiling {_fmt(limit, unit)}"
        )
    elif b.kind == "relative":
        relative = c.relative
        if relative is None:
            return BudgetResult(b.text, "error", f"{b.metric}: baseline is 0, no relative change")
        value, limit = relative, b.limit
        low = c.relative_bounds()[0]
        shown = (
            f"{_fmt(c.baseline.mean, unit)} -> {_fmt(c.candidate.mean, unit)}: "
            f"{_pct(value)}{_ci(*c.relative_bounds(), _pct)} vs budget {_pct(limit)}"
        )
    else:
        value, limit, low = c.diff.mean, b.limit, c.diff.low
        shown = (
            f"{_fmt(c.baseline.mean, unit)} -> {_fmt(c.candidate.mean, unit)}: "
            f"{c.diff.mean:+.4g}{_ci(c.diff.low, c.diff.high, _fmt)} "
            f"vs budget +{_fmt(limit, unit)}"
        )
    n = c.diff.n
    if value <= limit:
        return BudgetResult(b.text, "pass", f"{b.metric}: {shown}")
    if low is None:
        sure = "one round: no interval; run --rounds 3 or more to tell noise from change"
    elif low > limit:
        sure = f"over budget in all of the 95% interval ({n} rounds)"
    else:
        sure = f"the 95% interval reaches under the budget ({n} rounds): likely, not certain"
    return BudgetResult(b.text, "fail", f"{b.metric}: {shown}; {sure}")


@dataclass
class Comparison:
    baseline: str
    candidate: str
    rounds: int
    interval: str
    metrics: dict[str, MetricComparison]
    budgets: list[BudgetResult]
    warnings: list[str]
    runs: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    schedule: str = ""  # who ran first in each round, when this harness ran them

    @property
    def verdict(self) -> str:
        return "fail" if any(b.status != "pass" for b in self.budgets) else "pass"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        for name, c in self.metrics.items():
            d["metrics"][name]["relative"] = c.relative
            d["metrics"][name]["relative_ci"] = list(c.relative_bounds())
            d["metrics"][name]["unit"] = METRICS[name].unit
        return d

    def lines(self) -> list[str]:
        """The verdict for a terminal: one line per budget, then the table and warnings."""
        out = [
            f"verdict: {self.verdict.upper()} ({self.candidate} vs {self.baseline}, "
            f"{self.rounds} round(s), {self.interval})"
        ]
        out += [f"  {r.status.upper():5} {r.budget}: {r.reason}" for r in self.budgets]
        out.append(f"  {'metric':24} {'baseline':>12} {'candidate':>12} {'change':>9}  95% CI")
        for name, c in self.metrics.items():
            lo, hi = c.relative_bounds()
            ci = f"{_pct(lo)}..{_pct(hi)}" if lo is not None else "n/a"
            out.append(
                f"  {name:24} {_fmt(c.baseline.mean):>12} {_fmt(c.candidate.mean):>12} "
                f"{_pct(c.relative):>9}  {ci}"
            )
        if self.schedule:
            out.append(f"  order: {self.schedule}")
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  note: {n}" for n in self.notes]
        return out


INTERVAL = "95% Student t-interval on paired per-round differences"


def compare_runs(
    base_dirs: Sequence[Path],
    cand_dirs: Sequence[Path],
    budgets: Sequence[Budget],
    machine: dict[str, Any] | None = None,
    schedule: str = "",
) -> Comparison:
    """Compare results folders, paired by position (round i of each side)."""
    if not base_dirs or not cand_dirs:
        raise ConfigError("a comparison needs at least one run on each side")
    if len(base_dirs) != len(cand_dirs):
        raise ConfigError(
            f"rounds differ: {len(base_dirs)} baseline vs {len(cand_dirs)} "
            "candidate runs; pair them one to one"
        )
    base = [run_costs(d) for d in base_dirs]
    cand = [run_costs(d) for d in cand_dirs]
    recs_a = [load_record(d) for d in base_dirs]
    recs_b = [load_record(d) for d in cand_dirs]
    metrics_ = compare_values([v for v, _ in base], [v for v, _ in cand])
    notes = sorted({n for _, ns in (*base, *cand) for n in ns} | set(_short_runs(recs_a + recs_b)))
    return Comparison(
        baseline=_profile(recs_a),
        candidate=_profile(recs_b),
        rounds=len(base_dirs),
        interval=INTERVAL if len(base_dirs) > 1 else "one round: point estimates only",
        metrics=metrics_,
        budgets=[check_budget(b, metrics_.get(b.metric)) for b in budgets],
        warnings=environment_warnings(recs_a, recs_b),
        runs={"baseline": [str(d) for d in base_dirs], "candidate": [str(d) for d in cand_dirs]},
        notes=notes,
        machine=machine or {},
        schedule=schedule or "as given: paired by position, order of the runs not known",
    )


def _short_runs(records: Sequence[RunRecord]) -> list[str]:
    """Runs shorter than a profile's slowest poll see only some agents poll: noisy costs."""
    out = []
    for r in records:
        profile, note = run_profile(r)
        out += [note] if note else []
        if profile is None or r.config is None:
            continue
        slowest = max((p.interval_seconds for p in profile.polls), default=0.0)
        if r.config.duration_s < slowest:
            out.append(
                f"{r.config.profile}: {r.config.duration_s:g}s of load is shorter than "
                f"its {slowest:g}s poll interval; only some agents poll in a run "
                "(run at least one interval for steadier costs)"
            )
    return out


def _profile(records: Sequence[RunRecord]) -> str:
    names = sorted({r.config.profile if r.config else "?" for r in records})
    return "+".join(names)


def run_dirs(path: Path) -> list[Path]:
    """A results folder, or a folder of them (sorted by name, i.e. by time)."""
    if (path / "summary.json").exists():
        return [path]
    found = sorted(p.parent for p in path.glob("*/summary.json"))
    if not found:
        raise ConfigError(f"{path}: no summary.json in it or in its subfolders")
    return found


# --- running a comparison -----------------------------------------------------------------

Runner = Callable[[str, Path], Path]  # (profile, out_root) -> results folder


def machine_load() -> dict[str, float]:
    """The 1-minute load average against the cores: other work on the machine skews results."""
    one, five, _ = os.getloadavg()
    return {"loadavg_1m": one, "loadavg_5m": five, "cpus": float(os.cpu_count() or 0)}


def abba(rounds: int) -> list[tuple[int, int]]:
    """The order of the sides (0 baseline, 1 candidate) in each round: AB, BA, AB, ...
    Who goes first alternates, so drift within a round (a cache warming, a neighbour
    starting) favours each side equally often instead of always the second."""
    return [(0, 1) if i % 2 == 0 else (1, 0) for i in range(rounds)]


def schedule_text(rounds: int, a: str = "baseline", b: str = "candidate") -> str:
    order = " ".join("AB" if first == 0 else "BA" for first, _ in abba(rounds))
    return f"ABBA: who runs first alternates each round ({order}; A {a}, B {b})"


def interleave(
    baseline: str,
    candidate: str,
    rounds: int,
    out_root: Path,
    run: Runner,
    log: Callable[[str], None],
) -> tuple[list[Path], list[Path], dict[str, Any]]:
    """Both sides back to back every round, the first alternating (ABBA), so slow drift
    lands on both sides and drift within a round on neither more than the other."""
    if rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    sides: tuple[tuple[str, list[Path]], ...] = ((baseline, []), (candidate, []))
    loads: list[dict[str, Any]] = []
    for i, order in enumerate(abba(rounds)):
        for side in order:
            profile, dirs = sides[side]
            log(f"round {i + 1}/{rounds}: {profile}")
            loads.append({"round": i + 1, "profile": profile, "t": time.time(), **machine_load()})
            dirs.append(run(profile, out_root / "runs"))
    worst = max(x["loadavg_1m"] for x in loads)
    return (
        sides[0][1],
        sides[1][1],
        {"samples": loads, "loadavg_1m_max": worst, "schedule": schedule_text(rounds)},
    )
