"""The parts every report shares: one self-contained HTML page (plots inlined as base64
PNG), tables, lists, axes, and drawing that never hides the answer it follows."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from loadtest.errors import ConfigError  # noqa: E402

CSS = """body{font:14px system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-variant-numeric:tabular-nums}.pass{color:#17692f;font-weight:600}
.fail,.error{color:#b00020;font-weight:600}.warn{background:#fff4d6;padding:4px 8px}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:12px}"""


# --- building blocks ----------------------------------------------------------------------


def draw(make: Callable[[], Path], log: Callable[[str], None]) -> Path | None:
    """Draw a report once the answer is out: a report that cannot be drawn is a one-line
    warning, never a traceback in place of the verdict."""
    try:
        path = make()
    except Exception as e:  # noqa: BLE001 - whatever plotting raised, the verdict stands
        log(f"warning: report not drawn: {failure(e)}")
        return None
    log(f"report: {path}")
    return path


def failure(e: BaseException) -> str:
    """An exception as one short line."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def figure_tag(fig: Figure, caption: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(c: object) -> str:
    if isinstance(c, float):
        return f"{c:.4g}"
    if c in ("pass", "fail", "error"):
        return f'<span class="{c}">{str(c).upper()}</span>'
    return html.escape("" if c is None else str(c))


def items(lines: Iterable[str], cls: str = "") -> str:
    lis = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    return f'<ul class="{cls}">{lis}</ul>' if lis else ""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{b}" for h, b in sections if b)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        "</body></html>"
    )


def axes(
    title: str, ylabel: str, xlabel: str = "seconds since the first scrape"
) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def col(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]


# --- one run ------------------------------------------------------------------------------


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object")
    return data
