"""The mitigation check's report: with and without the APF objects, round by round, and
what they gave back to the other tenant."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from loadtest.measurements.bystander import ROLES
from loadtest.measurements.bystander import read_slots as role_slots
from loadtest.report.parts import axes, figure_tag, fmt, items, page, read_json, table
from loadtest.results import read_jsonl

VARIANTS = (("without", "tab:red"), ("with", "tab:green"))  # and their colours in plots
# (key in others_view, label, unit) for the side-by-side table and bars
MITIGATION_ROWS = (
    ("others_p99_s", "other tenant's LIST p99", "s"),
    ("others_429", "other tenant's 429s", ""),
    ("others_apf_wait_p99_s", "others' APF queue wait p99", "s"),
    ("mutating_p99_s", "mutating p99 at the API server", "s"),
    ("break_glass_p99_s", "break-glass PATCH p99", "s"),
    ("break_glass_failed", "break-glass PATCHes failed", ""),
    ("dns_error_rate", "DNS probe error ratio", ""),
    ("agents_throttled_429", "agents' 429s (expected to rise)", ""),
    ("agents_apf_rejected", "agents' APF rejections", ""),
)


def _role_series(run_dir: Path, role: str) -> tuple[list[float], list[float], list[bool]]:
    """(seconds since the role's first slot, ms as its quantiles count it, failed) for every
    scheduled slot of its raw stream."""
    s = role_slots(read_jsonl(run_dir / "raw" / f"{role}.jsonl"))
    t0 = s.slots[0]["sched"] if s.slots else 0.0
    return (
        [r["sched"] - t0 for r in s.slots],
        [s.value_ms(r) for r in s.slots],
        [r["cause"] is not None for r in s.slots],
    )


def mitigation_plots(data: dict[str, Any]) -> list[str]:
    out = []
    runs = data.get("runs", {})
    last = {v: (runs.get(v) or [{}])[-1] for v, _ in VARIANTS}
    seconds = [(k, label) for k, label, unit in MITIGATION_ROWS if unit == "s"]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = range(len(seconds))
    for i, (variant, color) in enumerate(VARIANTS):
        ax.bar(
            [j + 0.4 * i for j in x],
            [last[variant].get(k) or 0.0 for k, _ in seconds],
            0.4,
            color=color,
            alpha=0.75,
            label=f"{variant} mitigation",
        )
    ax.set_xticks([j + 0.2 for j in x], [label for _, label in seconds], fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("Everyone else and the break-glass path, without vs with the APF objects")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    out.append(figure_tag(fig, "p99s of the last round (lower is better)"))
    dirs = data.get("run_dirs", {})
    for role in ROLES.values():  # the client-timed roles every run records
        title = role.what[0].upper() + role.what[1:]
        fig, ax = axes(title, "latency (ms)", "seconds since the role's first request")
        drew = False
        for variant, color in VARIANTS:
            for d in dirs.get(variant, [])[-1:]:
                t, ms, failed = _role_series(Path(d), role.name)
                if not t:
                    continue
                drew = True
                ax.plot(t, ms, ".", ms=3, color=color, alpha=0.6, label=f"{variant} mitigation")
                bad = [(a, b) for a, b, f in zip(t, ms, failed, strict=True) if f]
                if bad:
                    ax.plot(
                        *zip(*bad, strict=True),
                        "x",
                        color="k",
                        label=f"{variant}: failed (429, timeout, unsent...)",
                    )
        if drew:
            ax.set_yscale("log")
            ax.legend(fontsize=8)
            out.append(
                figure_tag(
                    fig,
                    f"{title}: every scheduled request of the last round, "
                    "timed at the client from its scheduled time",
                )
            )
        else:
            plt.close(fig)
    return out


def write_mitigation_report(d: Path) -> Path:
    """Side by side: the scenario without and with the APF objects (mitigation/)."""
    data = read_json(d / "comparison.json")
    runs = data.get("runs", {})
    rows = []
    for k, label, unit in MITIGATION_ROWS:
        rows.append(
            (
                label + (f" ({unit})" if unit else ""),
                *(
                    ", ".join(fmt(v.get(k)) for v in runs.get(variant, []))
                    for variant, _ in VARIANTS
                ),
            )
        )
    slos = [
        (variant, ", ".join(v.get("others_slos_failed") or []) or "none")
        for variant, _ in VARIANTS
        for v in runs.get(variant, [])
    ]
    apf = d / "apf.yaml"
    html_ = page(
        f"Mitigation check: {data.get('verdict', '?')}",
        [
            (
                "Verdict",
                items(
                    [*data.get("reasons", []), *([data["schedule"]] if "schedule" in data else [])]
                )
                + (
                    table(
                        ("round", "verdict"),
                        [(r.get("round"), r.get("verdict")) for r in data["rounds"]],
                    )
                    if data.get("rounds")
                    else ""
                ),
            ),
            ("Side by side (one value per round)", table(("", "without", "with"), rows)),
            ("SLOs missed by anyone but the agents", table(("variant", "failed"), slos)),
            ("Plots", "".join(mitigation_plots(data))),
            ("Objects", f"<pre>{html.escape(apf.read_text())}</pre>" if apf.exists() else ""),
            (
                "Runs",
                items(
                    f"{variant}: {p}"
                    for variant, ps in data.get("run_dirs", {}).items()
                    for p in ps
                ),
            ),
        ],
    )
    path = d / "report.html"
    path.write_text(html_)
    return path
