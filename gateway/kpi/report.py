"""The daily report: one self-contained HTML page (inline CSS and SVG charts; a Content-Security-
Policy of its own forbids every request, so nothing is fetched from anywhere). Pure: data in,
text out."""

from __future__ import annotations

from html import escape
from typing import Any

TARGET = 0.98  # the seed's figure for both indicators


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.2f} %"


def _bars(title: str, groups: list[dict[str, Any]], key: str) -> str:
    """One bar per group (hour), height = the share; the 98 % line drawn across. The scale starts
    at 90 % while every share is above it (a 99 % hour must be told from a 100 % one)."""
    w, h, pad = 720, 160, 30
    n = max(1, len(groups))
    bw = (w - pad) / n
    values = [g[key] for g in groups if g.get(key) is not None]
    floor = 0.9 if values and min(values) >= 0.9 else 0.0

    def y(v: float) -> float:
        return h - max(1.0, (v - floor) / (1 - floor) * (h - 10))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 20}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<line x1="{pad}" y1="{h}" x2="{w}" y2="{h}" stroke="#888"/>']
    for i, g in enumerate(groups):
        v = g.get(key)
        x = pad + i * bw
        if v is None:
            out.append(f'<rect x="{x + 1:.1f}" y="{h - 2}" width="{bw - 2:.1f}" height="2" fill="#ccc"/>')
        else:
            bh = h - y(v)
            color = "#2a7" if v >= TARGET else "#d33"
            out.append(f'<rect x="{x + 1:.1f}" y="{h - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" '
                       f'fill="{color}"><title>{escape(g["start"][11:16])} {_pct(v)}</title></rect>')
        if i % 3 == 0:
            out.append(f'<text x="{x:.1f}" y="{h + 14}" font-size="10">{escape(g["start"][11:13])}</text>')
    y98 = y(TARGET)
    out.append(f'<line x1="{pad}" y1="{y98:.1f}" x2="{w}" y2="{y98:.1f}" stroke="#333" stroke-dasharray="4 3"/>')
    out.append(f'<text x="0" y="{y98 + 4:.1f}" font-size="10">98%</text>')
    out.append(f'<text x="0" y="{h:.1f}" font-size="10">{floor * 100:.0f}%</text></svg>')
    return "".join(out)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape('' if c is None else str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(day: str, data: dict[str, Any], generated_at: str) -> str:
    a, t, groups = data["availability"], data["timeliness"], data.get("groups", [])
    parts = _table(["part", "availability", "down (s)", "maintenance (s)", "outages", "in the whole"],
                   [[p, _pct(v["availability"]), v["down_s"], v["maintenance_s"], v["outages"],
                     "yes" if v["in_whole"] else "no"] for p, v in a["parts"].items()])
    channels = _table(["channel", "share met", "met", "missed", "pending", "deadline (s)"],
                      [[c, _pct(v["share"]), v["met"], v["missed"], v["pending"], data["deadlines"].get(c)]
                       for c, v in t["channels"].items()])
    outages = _table(["start", "end", "duration (s)", "part", "cause"],
                     [[o["start"], o["end"], o["duration_s"], o["part"], o["cause"]] for o in a["outages"]])
    maint = _table(["start", "end", "parts", "reason", "by", "downtime inside (s)"],
                   [[m["start"], m["end"], ", ".join(m["parts"]), m["reason"], m["created_by"], m["down_s"]]
                    for m in a["maintenance"]])
    misses = _table(["started", "channel", "target", "ref", "late (s)", "why"],
                    [[m["started"], m["channel"], m["target"], m["ref"],
                      "never reached" if m["late_s"] is None else m["late_s"], m["why"]] for m in t["misses"]])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Duty system indicators {escape(day)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #bbb;padding:2px 6px;font-size:13px;text-align:left}}.fig{{font-size:28px;font-weight:bold}}
.ok{{color:#2a7}}.bad{{color:#d33}}</style></head><body>
<h1>Duty system indicators, {escape(day)} (UTC)</h1>
<p>Window {escape(data["since"])} to {escape(data["until"])}; measured from {escape(a["measured_from"])}
to {escape(a["measured_to"])}. Generated {escape(generated_at)} from the gateway's stored facts.</p>
<h2>Normal operation</h2>
<p class="fig {'ok' if (a['whole']['availability'] or 0) >= TARGET else 'bad'}">{_pct(a["whole"]["availability"])}</p>
<p>The whole: {escape(", ".join(a["whole"]["parts"]))}; down {a["whole"]["down_s"]} s
(maintenance excluded: {a["whole"]["maintenance_s"]} s). Target {_pct(TARGET)}.</p>
{_bars("Availability of the whole by hour", groups, "availability")}
{parts}
<h3>Outages ({a["outages_total"]})</h3>{outages}
<h3>Planned maintenance (not counted)</h3>{maint}
<h2>Timeliness</h2>
<p class="fig {'ok' if (t['share'] or 0) >= TARGET else 'bad'}">{_pct(t["share"])}</p>
<p>{t["met"]} met, {t["missed"]} missed, {t["pending"]} not yet due. Target {_pct(TARGET)}.</p>
{_bars("Share of targets reached in time by hour", groups, "timeliness")}
{channels}
<h3>Misses ({t["misses_total"]})</h3>{misses}
</body></html>
"""
