"""HTML building blocks of the dashboard: escaping, the page layout and inline SVG charts (no I/O).

Everything shown comes from a store or a client (prompts are hostile input), so every value
goes through :func:`e` (``html.escape`` with quotes) or :func:`q` (URL quoting); the page
carries no script at all, and its Content-Security-Policy forbids any (see
:data:`SECURITY_HEADERS`). Styles are inline and fonts are the system's: the pages work
offline and load in one request.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from urllib.parse import quote

__all__ = ["SECURITY_HEADERS", "e", "q", "page", "line_chart", "bar_chart", "truncate"]

#: No scripts, no external anything; forms only post back to the dashboard itself.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Not "no-referrer": with it browsers send "Origin: null" on a same-origin POST,
    # which the same-origin check would have to accept.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def e(value: object) -> str:
    """``value`` as HTML text or attribute content (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def q(value: str) -> str:
    """``value`` quoted for a URL query or path part."""
    return quote(value, safe="")


def truncate(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


_CSS = """
:root{--bg:#f5f6f8;--card:#fff;--ink:#1d2433;--mute:#667085;--line:#e3e6eb;--accent:#3563e9;
--hit:#2e9d62;--sem:#7a5af8;--coal:#11a3b8;--miss:#e0693a;--bypass:#98a2b3;--bad:#c93a3a}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#151b2c;color:#fff;padding:0 24px;display:flex;align-items:center;gap:28px;height:52px}
header .brand{font-weight:650;letter-spacing:.2px}
header .brand span{color:#8fb0ff}
header nav a{color:#c7d0e3;text-decoration:none;margin-right:18px;padding:15px 0;border-bottom:2px solid transparent}
header nav a.on,header nav a:hover{color:#fff;border-bottom-color:#8fb0ff}
header .scope{margin-left:auto;color:#9aa6bf;font-size:12px}
main{max-width:1180px;margin:0 auto;padding:22px 24px 40px}
h1{font-size:20px;margin:0 0 16px}
h2{font-size:15px;margin:0 0 12px}
.grid{display:grid;gap:16px}
.cards{grid-template-columns:repeat(auto-fit,minmax(190px,1fr));margin-bottom:16px}
.two{grid-template-columns:3fr 2fr}
@media (max-width:900px){.two{grid-template-columns:1fr}}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;min-width:0;overflow-x:auto}
.stat .label{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.5px}
.stat .value{font-size:26px;font-weight:650;margin-top:4px}
.stat .sub{color:var(--mute);font-size:12px}
table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:7px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mute);font-weight:600;font-size:12px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.prompt{max-width:520px;overflow-wrap:anywhere}
a{color:var(--accent)}
.mute{color:var(--mute)}
.pill{display:inline-block;padding:1px 8px;border-radius:99px;font-size:12px;background:#eef2ff;color:#3447a8}
.pill.ok{background:#e7f6ee;color:#1f7a4a}.pill.warn{background:#fff2e5;color:#a14b16}
.banner{padding:10px 14px;border-radius:8px;margin-bottom:16px;background:#e7f6ee;color:#1f5f3c;border:1px solid #bfe5cf}
.banner.err{background:#fdecec;color:#8a2323;border-color:#f3c3c3}
form.inline{display:inline}
button{font:inherit;border:1px solid var(--line);background:#fff;border-radius:6px;padding:5px 12px;cursor:pointer}
button.danger{color:#fff;background:var(--bad);border-color:var(--bad)}
button.primary{color:#fff;background:var(--accent);border-color:var(--accent)}
input[type=search]{font:inherit;padding:6px 10px;border:1px solid var(--line);border-radius:6px;width:340px;max-width:100%}
pre{background:#f7f8fa;border:1px solid var(--line);border-radius:8px;padding:12px;white-space:pre-wrap;
overflow-wrap:anywhere;margin:0 0 12px;font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
dl{display:grid;grid-template-columns:150px 1fr;gap:6px 14px;margin:0}
dt{color:var(--mute)}dd{margin:0;overflow-wrap:anywhere}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:var(--mute);margin-top:8px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
svg text{font:11px system-ui,sans-serif;fill:#667085}
.empty{color:var(--mute);padding:18px 0;text-align:center}
"""

_NAV = (("overview", "Overview", ""), ("entries", "Entries", "/entries"), ("semantic", "Semantic hits", "/semantic"))


def page(title: str, body: str, *, base: str, active: str, scope_label: str) -> str:
    """A whole HTML page: the header with its navigation around ``body`` (already HTML)."""
    links = "".join(
        f'<a href="{e(base + path)}"{" class=on" if name == active else ""}>{e(label)}</a>'
        for name, label, path in _NAV
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{e(title)} \u00b7 llm-cache</title><style>{_CSS}</style></head><body>"
        f'<header><div class=brand>llm-cache <span>dashboard</span></div><nav>{links}</nav>'
        f"<div class=scope>{e(scope_label)}</div></header>"
        f"<main>{body}</main></body></html>"
    )


def line_chart(
    points: Sequence[tuple[float, float | None]],
    *,
    label: str,
    width: int = 640,
    height: int = 200,
    y_max: float = 1.0,
    percent: bool = True,
) -> str:
    """An inline SVG line chart of ``(t, y)`` points (``y`` None: a gap), x in seconds."""
    pad_l, pad_r, pad_t, pad_b = 42, 10, 10, 24
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [
        f'<svg role=img aria-label="{e(label)}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):  # horizontal grid with y labels
        y = pad_t + inner_h * i / 4
        value = y_max * (1 - i / 4)
        text = f"{value * 100:.0f}%" if percent else _short(value)
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6eb"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end">{e(text)}</text>')
    known = [(t, y) for t, y in points if y is not None]
    if len(known) < 2:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">'
            "collecting samples\u2026</text></svg>"
        )
        return "".join(parts)
    t0, t1 = known[0][0], known[-1][0]
    span = max(t1 - t0, 1e-9)

    def xy(t: float, y: float) -> str:
        x = pad_l + inner_w * (t - t0) / span
        yy = pad_t + inner_h * (1 - min(max(y / y_max, 0.0), 1.0))
        return f"{x:.1f},{yy:.1f}"

    coords = " ".join(xy(t, y) for t, y in known)
    area = f"{pad_l},{pad_t + inner_h} {coords} {pad_l + inner_w},{pad_t + inner_h}"
    parts.append(f'<polygon points="{area}" fill="#3563e9" fill-opacity=".08"/>')
    parts.append(f'<polyline points="{coords}" fill="none" stroke="#3563e9" stroke-width="2"/>')
    last = known[-1]
    parts.append(f'<circle cx="{xy(*last).split(",")[0]}" cy="{xy(*last).split(",")[1]}" r="3.5" fill="#3563e9"/>')
    parts.append(f'<text x="{pad_l}" y="{height - 6}">{e(_ago(t1 - t0))} ago</text>')
    parts.append(f'<text x="{width - pad_r}" y="{height - 6}" text-anchor="end">now</text></svg>')
    return "".join(parts)


def bar_chart(bars: Sequence[tuple[str, float, str]], *, label: str, width: int = 420) -> str:
    """An inline SVG horizontal bar chart of ``(name, value, colour)``."""
    row = 28
    height = max(row * len(bars), row)
    top = max((value for _, value, _ in bars), default=0) or 1
    parts = [
        f'<svg role=img aria-label="{e(label)}" viewBox="0 0 {width} {height}" width="100%" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    label_w, value_w = 96, 64
    span = width - label_w - value_w
    for i, (name, value, colour) in enumerate(bars):
        y = i * row
        w = max(span * value / top, 0 if value == 0 else 2)
        parts.append(f'<text x="0" y="{y + 18}">{e(name)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 6}" width="{w:.1f}" height="16" rx="3" fill="{e(colour)}"/>')
        parts.append(f'<text x="{width}" y="{y + 18}" text-anchor="end">{e(_short(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if math.isclose(value, round(value)):
        return f"{int(round(value)):,}"
    return f"{value:.2f}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
