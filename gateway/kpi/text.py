"""`dispatch-gateway kpi`: the window's times from the command line, and the figures as text."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from gateway.timeutil import now_iso

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def when(text: str, now: dt.datetime | None = None) -> str:
    """An ISO 8601 time as given, or `24h` (that long ago) as one; ValueError otherwise."""
    m = _AGO.match(text.strip())
    if m:
        now = now or dt.datetime.now(dt.UTC)
        ago = now - dt.timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])
        return ago.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ago.microsecond // 1000:03d}Z"
    if text.strip().lower() == "now":
        return now_iso()
    return text.strip()


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.2f} %"


def as_text(r: dict[str, Any]) -> str:
    a, t = r["availability"], r["timeliness"]
    w = a["whole"]
    lines = [f"window {r['since']} .. {r['until']} (measured {a['measured_from']} .. {a['measured_to']})",
             f"normal operation: {_pct(w['availability'])} (whole: {', '.join(w['parts'])};"
             f" down {w['down_s']} s, maintenance {w['maintenance_s']} s)"]
    lines += [f"  {p:<8} {_pct(v['availability']):>9}  down {v['down_s']} s, {v['outages']} outage(s)"
              for p, v in a["parts"].items()]
    lines += [f"  outage  {o['part']:<8} {o['start']} .. {o['end']} ({o['duration_s']} s): {o['cause']}"
              for o in a["outages"]]
    lines += [f"  maintenance {m['start']} .. {m['end']} [{', '.join(m['parts'])}] by {m['created_by']}:"
              f" {m['reason']} (downtime inside {m['down_s']} s)" for m in a["maintenance"]]
    lines.append(f"timeliness: {_pct(t['share'])} ({t['met']} met, {t['missed']} missed, {t['pending']} not yet due)")
    lines += [f"  {c:<11} {_pct(v['share']):>9}  {v['met']} met, {v['missed']} missed"
              f" (deadline {r['deadlines'].get(c)} s)" for c, v in t["channels"].items()]
    lines += [f"  miss    {m['channel']:<11} {m['target']} ({m['ref']}): "
              + ("never reached" if m["late_s"] is None else f"{m['late_s']} s late") + f": {m['why']}"
              for m in t["misses"]]
    return "\n".join(lines)
