"""The dashboard's pages as HTML strings, from the data of :mod:`._data` (no I/O)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from ..commands._common import prompt_text
from ._data import RESULTS, EntryRow, Listing, Sample, SemanticHit, TrafficSamples, hit_rate
from ._html import bar_chart, e, line_chart, q, truncate

__all__ = ["overview", "entries", "entry_detail", "semantic", "message_page"]

_COLOURS = {
    "hit": "#2e9d62",
    "semantic_hit": "#7a5af8",
    "coalesced": "#11a3b8",
    "miss": "#e0693a",
    "bypass": "#98a2b3",
}
_RESULT_NAMES = {
    "hit": "hit",
    "semantic_hit": "semantic hit",
    "coalesced": "coalesced",
    "miss": "miss",
    "bypass": "bypass",
}


def when(epoch: float | None) -> str:
    """A UTC time for tables, or a dash."""
    if epoch is None:
        return "\u2013"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def money(usd: float) -> str:
    return f"${usd:,.4f}" if usd < 1 else f"${usd:,.2f}"


def _card(label: str, value: str, sub: str = "") -> str:
    return (
        f'<div class="card stat"><div class=label>{e(label)}</div>'
        f"<div class=value>{e(value)}</div><div class=sub>{e(sub)}</div></div>"
    )


def _short_name(name: str) -> str:
    """A partition name short enough for a table cell (tenant hashes are 33 characters)."""
    return "/".join(part[:10] + "\u2026" if len(part) > 14 else part for part in name.split("/"))


def _percent(share: float | None) -> str:
    return "\u2013" if share is None else f"{share * 100:.1f}%"


def _banner(notice: str | None, error: str | None) -> str:
    if error:
        return f'<div class="banner err" role=alert>{e(error)}</div>'
    if notice:
        return f'<div class=banner role=status>{e(notice)}</div>'
    return ""


def _csrf(token: str) -> str:
    return f'<input type=hidden name=csrf value="{e(token)}">'


def overview(
    listing: Listing,
    traffic: TrafficSamples | None,
    *,
    base: str,
    notice: str | None = None,
) -> str:
    """Hit rate over time, requests by result, savings, partitions and top prompts."""
    latest: Sample | None = traffic.samples[-1] if traffic is not None and traffic.samples else None
    cards = []
    stored_hits = sum(p.hits for p in listing.partitions.values())
    hits_known = any(p.hits_known for p in listing.partitions.values())
    stored_tokens = sum(p.tokens_saved for p in listing.partitions.values())
    stored_cost = sum(p.cost_saved for p in listing.partitions.values())
    if latest is not None:
        cards.append(_card("Requests", f"{latest.total:,.0f}", "since the proxy started"))
        cards.append(_card("Hit rate", _percent(hit_rate(latest.requests)), "hits, semantic hits, coalesced"))
        cards.append(_card("Tokens saved", f"{latest.tokens_saved:,.0f}", "answers served without upstream"))
        cards.append(_card("Cost saved", money(latest.cost_saved), "estimated from the price table"))
    else:
        lookups = stored_hits + len(listing.rows)
        cards.append(
            _card(
                "Hit rate (est.)",
                _percent(stored_hits / lookups if hits_known and lookups else None),
                "stored hits over hits + entries",
            )
        )
        cards.append(_card("Tokens saved", f"{stored_tokens:,}", "stored hits \u00d7 stored usage"))
        cards.append(_card("Cost saved", money(stored_cost), "estimated from the price table"))
    cards.append(_card("Entries", f"{len(listing.rows):,}", "in view" + (" (scan cut short)" if listing.truncated else "")))

    charts = ""
    if traffic is not None:
        requests = latest.requests if latest is not None else {}
        bars = [(_RESULT_NAMES[r], requests.get(r, 0.0), _COLOURS[r]) for r in RESULTS]
        legend = "".join(
            f'<span><i style="background:{_COLOURS[r]}"></i>{e(_RESULT_NAMES[r])}</span>' for r in RESULTS
        )
        charts = (
            '<div class="grid two">'
            '<section class=card><h2>Hit rate over time</h2>'
            f"{line_chart(traffic.hit_rates(), label='hit rate over time')}"
            f'<div class=legend><span>one point per {e(f"{traffic.interval:g}")} s of traffic; '
            "all clients of this proxy process</span></div></section>"
            f'<section class=card><h2>Requests by result</h2>{bar_chart(bars, label="requests by result")}'
            f"<div class=legend>{legend}</div></section></div><div style='height:16px'></div>"
        )

    partitions = sorted(listing.partitions.values(), key=lambda p: (-p.entries, p.name))
    if partitions:
        part_rows = "".join(
            f'<tr><td><code title="{e(p.name)}">{e(_short_name(p.name))}</code></td>'
            f"<td class=num>{p.entries:,}</td>"
            f"<td class=num>{(f'{p.hits:,}' if p.hits_known else '&ndash;')}</td>"
            f"<td class=num>{p.tokens_saved:,}</td><td class=num>{e(money(p.cost_saved))}</td></tr>"
            for p in partitions
        )
        part_table = (
            "<table><thead><tr><th>namespace / tenant</th><th class=num>entries</th>"
            "<th class=num>hits</th><th class=num>tokens saved</th><th class=num>cost saved</th>"
            f"</tr></thead><tbody>{part_rows}</tbody></table>"
        )
    else:
        part_table = "<div class=empty>no entries yet</div>"

    top = listing.top(8)
    if top:
        top_rows = "".join(
            f'<tr><td class=prompt><a href="{e(base)}/entries/{e(row.id)}">'
            f"{e(truncate(prompt_text(row.entry.prompt), 90))}</a></td>"
            f"<td class=num>{row.hits:,}</td></tr>"
            for row in top
        )
        top_table = (
            "<table><thead><tr><th>prompt</th><th class=num>hits</th></tr></thead>"
            f"<tbody>{top_rows}</tbody></table>"
        )
    elif hits_known or not listing.rows:
        top_table = "<div class=empty>no hits recorded yet</div>"
    else:
        top_table = "<div class=empty>this store keeps no hit counts</div>"

    return (
        f"<h1>Overview</h1>{_banner(notice, None)}"
        f'<div class="grid cards">{"".join(cards)}</div>{charts}'
        '<div class="grid two">'
        f"<section class=card><h2>Top cached prompts</h2>{top_table}</section>"
        f"<section class=card><h2>By namespace / tenant</h2>{part_table}</section></div>"
    )


def entries(
    listing: Listing,
    *,
    base: str,
    search: str,
    page: int,
    per_page: int,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    """The entry list with its search box, newest first."""
    start = page * per_page
    shown = listing.rows[start : start + per_page]
    rows = "".join(
        f'<tr><td class=prompt><a href="{e(base)}/entries/{e(row.id)}">'
        f"{e(truncate(prompt_text(row.entry.prompt), 110))}</a></td>"
        f"<td>{e(row.model or '?')}</td><td><span class=pill>{e(row.kind)}</span></td>"
        f"<td class=num>{e(row.hits if row.entry.hit_count is not None else chr(8211))}</td>"
        f"<td class=num>{e(when(row.entry.created_at))}</td></tr>"
        for row in shown
    )
    table = (
        "<table><thead><tr><th>prompt</th><th>model</th><th>kind</th><th class=num>hits</th>"
        f"<th class=num>stored (UTC)</th></tr></thead><tbody>{rows}</tbody></table>"
        if shown
        else f"<div class=empty>{'no entry matches' if search else 'no entries'}</div>"
    )
    pager = []
    if page > 0:
        pager.append(f'<a href="{e(base)}/entries?q={e(q(search))}&amp;page={page - 1}">\u2190 newer</a>')
    if start + per_page < len(listing.rows):
        pager.append(f'<a href="{e(base)}/entries?q={e(q(search))}&amp;page={page + 1}">older \u2192</a>')
    n = len(listing.rows)
    count = f"{n:,} match{'es' if n != 1 else ''}" if search else f"{n:,} entr{'ies' if n != 1 else 'y'}"
    return (
        f"<h1>Entries</h1>{_banner(notice, error)}"
        f'<section class=card><form method=get action="{e(base)}/entries" role=search '
        'style="display:flex;gap:8px;align-items:center;margin-bottom:12px">'
        f'<input type=search name=q value="{e(search)}" placeholder="search prompts and answers" aria-label=search>'
        f'<button class=primary type=submit>Search</button><span class=mute style="margin-left:auto">{e(count)}</span></form>'
        f'{table}<div class=legend>{" ".join(pager)}</div></section>'
    )


def entry_detail(row: EntryRow, *, base: str, csrf: str, can_delete: bool, prices: object) -> str:
    """One entry: its metadata, prompt, answers and parameters, and the delete action."""
    entry = row.entry
    try:
        params = json.dumps(json.loads(entry.llm_string), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        params = entry.llm_string
    tokens = "\u2013" if row.tokens is None else f"{row.tokens[0]:,} in / {row.tokens[1]:,} out"
    cost = "\u2013"
    if row.tokens is not None:
        cost = money(prices.cost(row.model, *row.tokens))  # type: ignore[attr-defined]
    answers = "".join(
        f"<h2>Answer {i + 1}</h2><pre>{e(g.text or json.dumps(g.message, ensure_ascii=False))}</pre>"
        for i, g in enumerate(entry.generations)
    )
    delete = (
        f'<form class=inline method=post action="{e(base)}/entries/{e(row.id)}/delete">{_csrf(csrf)}'
        '<button class=danger type=submit>Delete this entry</button></form>'
        if can_delete
        else '<span class=mute>read-only: start the dashboard with --allow-delete to delete entries</span>'
    )
    facts = [
        ("id", f"<code>{e(row.id)}</code>"),
        ("namespace", f"<code>{e(row.namespace or '(none)')}</code>"),
        ("model", e(row.model or "?")),
        ("kind", e(row.kind)),
        ("stored (UTC)", e(when(entry.created_at))),
        ("expires (UTC)", e(when(entry.expires_at))),
        ("hits", e(entry.hit_count if entry.hit_count is not None else "not kept by this store")),
        ("last hit (UTC)", e(when(entry.last_hit_at))),
        ("usage", e(tokens)),
        ("cost of one call", e(cost)),
    ]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f'<h1>Entry</h1><div class="grid two"><section class=card><h2>Prompt</h2>'
        f"<pre>{e(prompt_text(entry.prompt))}</pre>{answers}</section>"
        f"<section class=card><h2>Details</h2><dl>{dl}</dl><div style='height:14px'></div>{delete}"
        f"<div style='height:18px'></div><h2>Parameters (llm_string)</h2><pre>{e(params)}</pre></section></div>"
    )


def semantic(
    hits: Sequence[SemanticHit],
    *,
    base: str,
    csrf: str,
    can_report: bool,
    enabled: bool,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    """Recent answers given by meaning, with their similarity and a "wrong" button."""
    if not enabled:
        body = (
            "<div class=empty>semantic hits are recorded by a running proxy started with "
            "<code>--semantic</code></div>"
        )
    elif not hits:
        body = "<div class=empty>no semantic hits yet</div>"
    else:
        rows = []
        for hit in reversed(hits):
            if hit.reported:
                action = "<span class='pill warn'>reported</span>"
            elif can_report:
                action = (
                    f'<form class=inline method=post action="{e(base)}/semantic/{e(hit.id)}/report">'
                    f"{_csrf(csrf)}<button type=submit>Wrong answer</button></form>"
                )
            else:
                action = "<span class=mute title='the semantic cache takes no reports'>\u2013</span>"
            rows.append(
                f"<tr><td class=num>{e(when(hit.at))}</td>"
                f"<td class=num><span class='pill ok'>{hit.similarity:.3f}</span></td>"
                f"<td class=prompt>{e(truncate(prompt_text(hit.prompt), 90))}</td>"
                f"<td class=prompt>{e(truncate(hit.answer, 90))}</td><td>{action}</td></tr>"
            )
        body = (
            "<table><thead><tr><th class=num>time (UTC)</th><th class=num>similarity</th>"
            "<th>request</th><th>answer given</th><th></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
        if not can_report:
            body += (
                "<p class=mute>Reporting a wrong answer needs a semantic cache that learns "
                "from reports: <code>SemanticCache(max_error_rate=...)</code>, or any cache "
                "with <code>feedback()</code>.</p>"
            )
    return f"<h1>Recent semantic hits</h1>{_banner(notice, error)}<section class=card>{body}</section>"


def message_page(title: str, text: str) -> str:
    """The body of an error or notice page."""
    return f'<h1>{e(title)}</h1><section class=card><p>{e(text)}</p></section>'
