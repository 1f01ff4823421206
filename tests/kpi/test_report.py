"""The daily report's page without a gateway: self-contained (nothing it could fetch), charts as
inline SVG, everything from the figures escaped."""

from __future__ import annotations

import re

from gateway.kpi import availability, timeliness
from gateway.kpi.report import render

T0 = 1_800_000_000.0


def _data(cause: str) -> dict:
    runs = [availability.Run(1, T0, T0 + 7200)]
    tr = [availability.Transition(1, T0 + 100, "sip", False, cause), availability.Transition(1, T0 + 160, "sip", True)]
    groups = [{"start": f"2027-01-15T0{h}:00:00.000Z", "availability": a, "timeliness": None}
              for h, a in ((8, 0.99), (9, 1.0))]
    return {"since": "2027-01-15T08:00:00.000Z", "until": "2027-01-15T10:00:00.000Z",
            "deadlines": {"call": 30.0, "broadcast": 10.0, "sms": 60.0, "instruction": 60.0},
            "availability": availability.compute(runs, tr, [], parts=["store", "sip"], whole=["store", "sip"],
                                                 since=T0, until=T0 + 7200, now=T0 + 7200),
            "timeliness": timeliness.compute([timeliness.Target("call", "c1", "sip:<b>@x", T0, 30, T0 + 45)],
                                             now=T0 + 7200),
            "groups": groups}


def test_page_is_self_contained_with_charts_and_escaped() -> None:
    page = render("2027-01-15", _data('worker <script>alert("x")</script> gone'), "2027-01-16T00:00:05.000Z")
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "sip:&lt;b&gt;@x" in page
    assert not re.search(r"\b(src|href)=|@import|url\(", page)
    assert page.count("<svg") == 2 and page.count("<rect") >= 2
    assert ">90%</text>" in page  # every hour above 90 %: the scale starts there
    assert "99.17 %" in page and "15.0" in page  # the whole's figure; the call 15 s late


async def test_two_readers_of_todays_report_at_once_each_get_it_whole(tmp_path) -> None:
    """The report is written to a temp file and renamed: two writers at once must not share one
    temp file (the second rename found it gone)."""
    import asyncio

    from gateway.kpi.service import _write_atomically

    path = tmp_path / "reports" / "kpi-2027-01-15.html"
    pages = [f"<!DOCTYPE html>{i}" + "x" * 2_000_000 for i in range(8)]
    await asyncio.gather(*(asyncio.to_thread(_write_atomically, path, p) for p in pages))
    assert path.read_text() in pages
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
