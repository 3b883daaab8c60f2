"""The dashboard's HTML, rendered on the server: plain forms and links, charts as inline SVG,
one stylesheet from the package. Nothing loads from elsewhere and no script is needed.

Every value placed in a page goes through `esc`; the figures reaching here are already
suppressed (service_layer/figures.py) and hold no youth_id.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import urlencode

from ..domain.suppression import HIDDEN
from ..service_layer.figures import FUNNEL_STEPS

NO_DATA = '<p class="no-data">no data yet</p>'


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def layout(
    title: str, body: str, *, who: str | None = None, ops: bool = False, message: str | None = None
) -> str:
    nav = ""
    if who is not None:
        links = '<a href="/">Funnel</a>'
        if ops:
            links += ' <a href="/pipeline">Pipeline</a> <a href="/deadletters">Dead letters</a>'
        nav = (
            f'<nav>{links}<span class="who">{esc(who)}</span>'
            '<form method="post" action="/logout" class="inline"><button>Log out</button></form></nav>'
        )
    flash = f'<p class="message" role="status">{esc(message)}</p>' if message else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · Raccrochage ops</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/ops.css"></head><body>'
        f"<header><h1>Raccrochage · {esc(title)}</h1>{nav}</header><main>{flash}{body}</main></body></html>"
    )


def login(why: str | None = None) -> str:
    body = (
        (f'<p class="error">{esc(why)}</p>' if why else "")
        + '<form method="post" action="/login" class="login"><label for="token">Token '
        "(<code>raccrochage token --role ops</code>)</label>"
        '<input id="token" name="token" type="password" autocomplete="off" required>'
        '<button type="submit">Open the dashboard</button></form>'
    )
    return layout("log in", body)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def bar_chart(rows: list[tuple[str, Any]], *, label: str, width: int = 560) -> str:
    """Horizontal bars; a hidden cell is drawn as an empty bar labelled "< 5"."""
    if not rows:
        return NO_DATA
    top = max((_number(v) for _, v in rows), default=0) or 1
    height = 22 * len(rows) + 4
    bars = []
    for i, (name, value) in enumerate(rows):
        y = 22 * i + 2
        length = max(1.0, (width - 360) * _number(value) / top) if _number(value) else 0
        bars.append(
            f'<text x="0" y="{y + 15}" class="label">{esc(name)}</text>'
            f'<rect x="300" y="{y}" width="{length:.1f}" height="18" class="bar"></rect>'
            f'<text x="{304 + length:.1f}" y="{y + 15}" class="value">{esc(value)}</text>'
        )
    return (
        f'<svg role="img" aria-label="{esc(label)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" class="chart">{"".join(bars)}</svg>'
    )


def weekly_chart(weekly: dict[str, dict[str, Any]], width: int = 560, height: int = 160) -> str:
    if not weekly:
        return NO_DATA
    series = ("opened", "contacted", "solution")
    top = max((_number(row[s]) for row in weekly.values() for s in series), default=0) or 1
    weeks = list(weekly)
    step = (width - 40) / max(1, len(weeks) - 1) if len(weeks) > 1 else 0
    lines = []
    for s in series:
        xy = [
            (20 + i * step, height - 20 - (height - 40) * _number(weekly[w][s]) / top)
            for i, w in enumerate(weeks)
        ]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        lines.append(f'<polyline points="{points}" class="line {s}"></polyline>')
        # A dot per week, titled with its value: a single week still shows, "< 5" included.
        lines.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="dot {s}"><title>{esc(w)} {s}: {esc(weekly[w][s])}</title></circle>'
            for (x, y), w in zip(xy, weeks, strict=True)
        )
    lines.append(f'<text x="20" y="{height - 4}" class="axis">{esc(weeks[0])}</text>')
    if len(weeks) > 1:
        lines.append(
            f'<text x="{width - 20}" y="{height - 4}" class="axis" text-anchor="end">{esc(weeks[-1])}</text>'
        )
    legend = "".join(
        f'<text x="{20 + 120 * i}" y="12" class="legend {s}">{s}</text>' for i, s in enumerate(series)
    )
    return (
        f'<svg role="img" aria-label="per week" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" class="chart">{legend}{"".join(lines)}</svg>'
    )


def table(headers: list[str], rows: list[list[Any]], *, test_id: str | None = None) -> str:
    if not rows:
        return NO_DATA
    attr = f' data-testid="{esc(test_id)}"' if test_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=hidden-cell' if c == HIDDEN else ''}>{esc(c)}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _breakdown(title: str, shown: dict[str, Any], test_id: str) -> str:
    rows = [[name, value] for name, value in sorted(shown["parts"].items())]
    if not rows:
        return f"<h3>{esc(title)}</h3>{NO_DATA}"
    return f"<h3>{esc(title)} (total {esc(shown['total'])})</h3>" + table(
        ["", "youths"], rows, test_id=test_id
    )


def _select(
    name: str, label: str, options: list[str], chosen: str | None, *, locked: str | None = None
) -> str:
    if locked:
        return f'<label>{esc(label)} <select name="{name}" disabled><option>{esc(locked)}</option></select></label>'
    opts = '<option value="">all</option>' + "".join(
        f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}</option>' for o in options
    )
    return f'<label>{esc(label)} <select name="{name}">{opts}</select></label>'


def dashboard(figures: dict[str, Any], *, territory: str | None) -> str:
    f = figures["filters"]
    choices = figures["choices"]
    filters = (
        '<form method="get" action="/" class="filters">'
        + _select("campaign", "Campaign", choices["campaigns"], f["campaign_id"])
        + _select("departement", "Département", choices["departements"], f["departement"], locked=territory)
        + _select("psad", "PSAD", choices["psads"], f["psad_id"])
        + f'<label>Case opened from <input type="date" name="opened_from" value="{esc(f["opened_from"])}"></label>'
        + f'<label>to <input type="date" name="opened_to" value="{esc(f["opened_to"])}"></label>'
        + '<button type="submit">Filter</button></form>'
    )
    funnel_rows = [(label, figures["funnel"][name]) for name, label in FUNNEL_STEPS]
    has_youths = any(v not in (0, None) for _, v in funnel_rows)
    funnel = (
        bar_chart(funnel_rows, label="funnel")
        + table(["step", "youths"], [[label, v] for label, v in funnel_rows], test_id="funnel")
        if has_youths
        else NO_DATA
    )
    territories = table(
        [
            "département",
            "handed over",
            "case opened",
            "contacted",
            "in solution",
            "closed",
            "open after 30 days",
        ],
        [
            [
                dep,
                r["handed_over"],
                r["case_opened"],
                r["contacted"],
                r["in_solution"],
                r["closed"],
                r["open_30"],
            ]
            for dep, r in figures["by_departement"].items()
        ],
        test_id="by-departement",
    )
    status = table(
        ["case status", "youths"],
        [[k, v] for k, v in figures["by_status"]["parts"].items()],
        test_id="by-status",
    )
    campaigns = table(
        [
            "campaign",
            "as of",
            "rows",
            "rejected",
            "duplicates",
            "excluded",
            "identified",
            "reported again",
            "other",
        ],
        [
            [
                c["campaign_id"],
                c["as_of"],
                c["rows"],
                c["rejected"],
                c["duplicates"],
                c["excluded"],
                c["identified"],
                c["reported_again"],
                c["other"],
            ]
            for c in figures["campaigns"]
        ],
        test_id="campaigns",
    )
    seats = table(
        ["département", "seats offered", "seats left", "stale offers", "reserved", "placed"],
        [
            [d, r["offered"], r["left"], r["stale"], r["reserved"], r["placed"]]
            for d, r in figures["seats"].items()
        ],
        test_id="seats",
    )
    m = figures["mlds"]
    mlds_empty = m["candidacies"] == 0 and not m["decisions"]["parts"] and m["places"]["capacity"] == 0
    mlds = (
        NO_DATA
        if mlds_empty
        else table(
            ["candidacies", "enrolled", "places", "places left"],
            [[m["candidacies"], m["enrolled"], m["places"]["capacity"], m["places"]["left"]]],
            test_id="mlds",
        )
        + _breakdown("Decisions", m["decisions"], "mlds-decisions")
        + _breakdown("Exits by destination", m["exits_by_destination"], "mlds-exits")
    )
    clauses = table(
        ["département", "clauses", "hours required", "hours planned", "hours done", "ending soon"],
        [
            [d, r["clauses"], r["hours_required"], r["hours_planned"], r["hours_done"], r["ending_soon"]]
            for d, r in figures["clauses"].items()
        ],
        test_id="clauses",
    )
    interviews = figures["interviews"]
    body = (
        filters
        + f'<p class="as-of">Figures as of {esc(figures["as_of"])}. A cell of fewer than 5 youths shows "&lt; 5".</p>'
        + f'<section id="funnel"><h2>Funnel</h2>{funnel}<h3>By département</h3>{territories}</section>'
        + '<section id="interviews"><h2>Interviews</h2>'
        + table(
            ["interviewed", "within 15 days", "late"],
            [[interviews["total"], interviews["parts"]["within_15_days"], interviews["parts"]["late"]]],
            test_id="interviews",
        )
        + "</section>"
        + '<section id="outcomes"><h2>Outcomes</h2>'
        + _breakdown("In solution, by kind", figures["in_solution_by_kind"], "in-solution")
        + _breakdown("Closed, by reason", figures["closed_by_reason"], "closed")
        + f"<h3>Cases by status</h3>{status}</section>"
        + f'<section id="weekly"><h2>Per week</h2>{weekly_chart(figures["weekly"])}</section>'
        + f'<section id="campaigns"><h2>Campaign files</h2>{campaigns}</section>'
        + f'<section id="seats"><h2>Seats (FOQUALE)</h2>{seats}</section>'
        + f'<section id="mlds"><h2>MLDS</h2>{mlds}</section>'
        + f'<section id="clauses"><h2>Clauses sociales</h2>{clauses}</section>'
    )
    return body


def pipeline(snapshot: dict[str, Any]) -> str:
    consumers = snapshot["consumers"]
    lag = bar_chart([(c["consumer"], c["pending"] or 0) for c in consumers], label="lag per consumer")
    consumer_table = table(
        [
            "stream",
            "consumer",
            "service",
            "pending",
            "ack pending",
            "redelivered",
            "oldest unacked (s)",
            "error",
        ],
        [
            [
                c["stream"],
                c["consumer"],
                c["service"],
                c["pending"],
                c["ack_pending"],
                c["redelivered"],
                None if c["oldest_unacked_seconds"] is None else round(c["oldest_unacked_seconds"], 1),
                c["error"],
            ]
            for c in consumers
        ],
        test_id="consumers",
    )
    outbox = table(
        ["service", "relay", "backlog", "oldest unpublished (s)", "error"],
        [
            [o["service"], "up" if o["up"] else "down", o["backlog"], o["oldest_seconds"], o["error"]]
            for o in snapshot["outboxes"]
        ],
        test_id="outboxes",
    )
    letters = table(
        ["service", "kind", "reason", "dead letters"],
        [
            [
                d["service"],
                d["kind"],
                f"{d['reason']}",
                d["count"],
            ]
            for d in snapshot["dead_letters"]
        ],
        test_id="dead-letter-counts",
    )
    return (
        f"<section><h2>Consumers: lag</h2>{lag}{consumer_table}</section>"
        f"<section><h2>Outboxes (from each service's /metrics)</h2>{outbox}</section>"
        f'<section><h2>Dead letters per reason</h2>{letters}<p><a href="/deadletters">Dead letters</a></p></section>'
        "<section><h2>Read models</h2><p>Rebuild them from the streams: they empty, then fill up again "
        "as ops replays every stream (the figures are partial meanwhile).</p>"
        '<form method="post" action="/rebuild"><button type="submit">Rebuild the read models</button></form></section>'
    )


def dead_letters(
    letters: list[dict[str, Any]],
    services: list[str],
    reasons: list[str],
    service: str | None,
    reason: str | None,
    older: int | None = None,
) -> str:
    """The list; `older`: where the next, older page starts when this one left some unread."""
    form = (
        '<form method="get" action="/deadletters" class="filters">'
        + _select("service", "Service", services, service)
        + _select("reason", "Reason", reasons, reason)
        + '<button type="submit">Filter</button></form>'
    )
    rows = [
        [
            f'<a href="/deadletters/{int(d["seq"])}">{int(d["seq"])}</a>',
            esc(d["service"]),
            esc(d["consumer"]),
            esc(d["subject"]),
            esc(d["reason"]),
            esc(d["at"]),
        ]
        for d in letters
    ]
    listing = (
        NO_DATA
        if not rows
        else (
            '<table data-testid="dead-letters"><thead><tr><th>#</th><th>service</th><th>consumer</th>'
            "<th>subject</th><th>reason</th><th>at</th></tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
            + "</tbody></table>"
        )
    )
    truncated = ""
    if older is not None:
        query = urlencode(
            {k: v for k, v in (("service", service), ("reason", reason)) if v} | {"before": older}
        )
        truncated = (
            f'<p class="truncated" data-testid="truncated">The list shows the {len(letters)} most recent '
            f'dead letters read; older ones are not listed: <a href="/deadletters?{esc(query)}">older</a>.</p>'
        )
    replay_all = ""
    if reason and letters:
        every = "every one" if older is not None else f"all {len(letters)}"
        replay_all = (
            '<form method="post" action="/deadletters/replay" class="inline">'
            f'<input type="hidden" name="reason" value="{esc(reason)}">'
            f'<input type="hidden" name="service" value="{esc(service or "")}">'
            f'<button type="submit">Replay {every} of this reason</button></form>'
        )
    return form + listing + truncated + replay_all


def dead_letter(letter: dict[str, Any]) -> str:
    facts = table(
        ["", ""],
        [
            [k, letter[k]]
            for k in (
                "seq",
                "service",
                "consumer",
                "subject",
                "stream",
                "stream_seq",
                "delivered",
                "at",
                "reason",
            )
        ],
        test_id="dead-letter",
    )
    headers = table(["header", "value"], [[k, v] for k, v in sorted(letter["headers"].items())])
    payload = (
        f'<pre data-testid="payload">{esc(json.dumps(letter["payload"], indent=2, ensure_ascii=False))}</pre>'
        if letter["shown"]
        else f'<p class="withheld" data-testid="payload-withheld">{esc(letter["why"])}</p>'
    )
    back = "/deadletters?" + urlencode({"service": letter["service"]})
    return (
        facts
        + f"<h2>Headers</h2>{headers}<h2>Payload</h2>{payload}"
        + f'<form method="post" action="/deadletters/{int(letter["seq"])}/replay"><button type="submit">Replay</button></form>'
        + f'<p><a href="{esc(back)}">Back</a></p>'
    )
