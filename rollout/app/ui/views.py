"""HTML for the dashboard, rendered on the server from :func:`.sources.snapshot`.

Every value goes through :func:`html.escape`; the charts are inline SVG drawn
with attributes only, so the page runs under a strict Content-Security-Policy
(no inline script or style)."""

from __future__ import annotations

import time
from html import escape
from typing import Any

_STEP_CLASS = {True: "ok", False: "failed", None: "running"}


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h" if seconds < 172800 else f"{seconds / 86400:.1f}d"


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _table(columns: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pools_html(snap: dict[str, Any]) -> str:
    parts = []
    for pool in snap["pools"]:
        title = f"<h3>{_e(pool['role'])}</h3>"
        if pool["error"]:
            parts.append(f'{title}<p class="error">{_e(pool["error"])}</p>')
            continue
        rows = [[_e(n["name"]), _e(n["address"]), _e(n["version"]),
                 f"<code>{_e(n['image'])}</code>",
                 _e(n["state"]), _age(n["age"]),
                 f'<span class="{"up" if n["in_service"] else "down"}">{_e(n["lb"])}</span>']
                for n in pool["nodes"]]
        parts.append(title + _table(["node", "address", "version", "image", "state", "age",
                                     "LB"], rows, "nodes"))
    return "".join(parts) or "<p>No pools in this environment.</p>"


def _timeline_svg(rollout: dict[str, Any], width: int = 720, row: int = 22) -> str:
    nodes = rollout["nodes"]
    span = max([s["end"] for n in nodes for s in n["steps"]] + [1.0])
    label = 170
    scale = (width - label - 10) / span
    height = row * len(nodes) + 8
    out = [f'<svg class="timeline" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    for i, node in enumerate(nodes):
        y = 4 + i * row
        out.append(f'<text x="0" y="{y + 14}" class="lbl">{_e(node["new"] or node["old"])} '
                   f'({_e(node["phase"])})</text>')
        for s in node["steps"]:
            x = label + s["start"] * scale
            w = max(2.0, (s["end"] - s["start"]) * scale)
            out.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" '
                       f'class="step {_STEP_CLASS[s["ok"]]}" data-kind="{_e(s["kind"])}">'
                       f'<title>{_e(s["kind"])} {_e(s["node"])} '
                       f'{s["end"] - s["start"]:.1f}s</title></rect>')
    out.append("</svg>")
    return "".join(out)


def _capacity_svg(rollout: dict[str, Any], width: int = 720, height: int = 90) -> str:
    series = rollout["capacity"]
    top = max([level for _, level in series] + [rollout["pool_size"] + 1])
    span = max(series[-1][0], 1.0)

    def xy(t: float, level: float) -> str:
        return f"{10 + t / span * (width - 20):.1f},{height - 10 - level / top * (height - 20):.1f}"

    points = []
    for i, (t, level) in enumerate(series):
        if i:  # a step chart: hold the previous level until this change
            points.append(xy(t, series[i - 1][1]))
        points.append(xy(t, level))
    floor_y = height - 10 - rollout["floor"] / top * (height - 20)
    return (f'<svg class="capacity" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">'
            f'<line x1="10" x2="{width - 10}" y1="{floor_y:.1f}" y2="{floor_y:.1f}" '
            f'class="floor"><title>floor {rollout["floor"]}</title></line>'
            f'<polyline points="{" ".join(points)}" class="level"/>'
            f'<text x="12" y="12" class="lbl">in service (from phases), floor '
            f'{rollout["floor"]} of {rollout["pool_size"]}</text></svg>')


def live_html(snap: dict[str, Any]) -> str:
    """The rollouts section: the part of the page the script refreshes."""
    parts = []
    for r in snap["rollouts"]:
        phases = ", ".join(f"{k} {v}" for k, v in sorted(r["phases"].items()))
        parts.append(
            f'<div class="rollout" data-id="{_e(r["id"])}" data-status="{_e(r["status"])}">'
            f'<h3>{_e(r["role"])}: <code>{_e(r["id"])}</code> '
            f'<span class="status {_e(r["status"])}">{_e(r["status"])}</span></h3>'
            f'<p>to {_e(r["target_version"])} (<code>{_e(r["target_image"])}</code>), '
            f'started {_when(r["started_at"])}; {_e(phases)}'
            f'{" — " + _e(r["message"]) if r["message"] else ""}</p>'
            f'{_timeline_svg(r)}{_capacity_svg(r)}</div>')
    return "".join(parts) or "<p>No rollouts recorded yet.</p>"


def history_html(snap: dict[str, Any]) -> str:
    rows = [[f"<code>{_e(h['id'])}</code>", _e(h["role"]), _e(h["status"]),
             _e(h["target_version"]), _when(h["started_at"]), _when(h["finished_at"]),
             str(h["replacements"])] for h in snap["history"]]
    return _table(["id", "role", "status", "version", "started", "finished", "nodes"], rows)


def images_html(snap: dict[str, Any]) -> str:
    if snap["images_error"]:
        return f'<p class="error">{_e(snap["images_error"])}</p>'
    rows = []
    for i in snap["images"]:
        promotions = "<br>".join(f"{_e(p.get('env'))} by {_e(p.get('by'))} {_when(p.get('at'))}"
                                 for p in i["promotions"]) or "-"
        evidence = "<br>".join(
            f"{_e(e['env'])} <code>{_e(e['rollout_id'])}</code>: " + ", ".join(
                "JUnit missing" if j["missing"] else
                f"JUnit {j['tests']} tests, {j['failures']} failures, {j['errors']} errors"
                for j in e["junit"]) for e in i["evidence"]) or "-"
        rows.append([f"<code>{_e(i['id'])}</code>", _e(i["role"]), _e(i["version"]),
                     _when(i["created_at"]), "yes" if i["verified"] else "NO",
                     _e(", ".join(i["passed_envs"]) or "-"), promotions, evidence])
    return _table(["id", "role", "version", "created", "verified", "passed in", "promotions",
                   "evidence"], rows)


def page(snap: dict[str, Any], *, refresh: float) -> str:
    """The whole page."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>rollout: {_e(snap["env"])}</title>'
        '<link rel="stylesheet" href="/static/ui.css">'
        f'<script src="/static/ui.js" defer></script></head>'
        f'<body data-refresh="{refresh:g}"><header><h1>rollout · {_e(snap["env"])}</h1>'
        f'<span id="updated">as of {_when(snap["now"])} UTC</span></header>'
        f'<section><h2>Rollouts</h2><div id="live">{live_html(snap)}</div></section>'
        f'<section><h2>Pools</h2><div id="pools">{pools_html(snap)}</div></section>'
        f'<section><h2>History</h2>{history_html(snap)}</section>'
        f'<section><h2>Images</h2>{images_html(snap)}</section>'
        '</body></html>')
