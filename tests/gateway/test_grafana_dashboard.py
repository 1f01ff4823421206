"""docs/grafana-dashboard.json is valid JSON, a Grafana dashboard, and reads only metrics a real
gateway's /metrics has (issue 12): every `dispatch_*` name in its queries is in a scrape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": ("",), "untyped": ("",)}


def _queries(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


async def test_dashboard_reads_only_metrics_the_gateway_exposes(start_gateway) -> None:
    dashboard = json.loads(DASHBOARD.read_text())  # valid JSON
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 30 and dashboard["panels"]
    assert all({"id", "type", "title", "gridPos", "targets"} <= set(p) for p in dashboard["panels"])
    used = {name for q in _queries(dashboard) for name in re.findall(r"\b(dispatch_[a-z0-9_]+)\b", q)}
    assert len(used) >= 15, used
    gw = await start_gateway()
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{gw.http_port}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        exposed |= {family.name + suffix for suffix in SUFFIXES[family.type]}  # a labelled one before its first sample
        exposed |= {sample.name for sample in family.samples}
    assert used <= exposed, sorted(used - exposed)
