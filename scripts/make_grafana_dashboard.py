"""Writes docs/grafana-dashboard.json: the panels of the dispatch-gateway dashboard, from the
metrics of /metrics (docs/operations.md, Metrics). Run it after changing the panels below;
tests/gateway/test_grafana_dashboard.py checks every metric name against a scrape of the gateway.

    python3 scripts/make_grafana_dashboard.py
"""

import json
from pathlib import Path
panels_spec = [
    ("Normal operation, whole (24 h; target 98 %)", "stat", [('dispatch_availability_ratio{part="whole"}', "whole")], "percentunit"),
    ("Timeliness, all channels (24 h; target 98 %)", "stat", [('dispatch_timeliness_ratio{channel="all"}', "all")], "percentunit"),
    ("Parts down now", "stat", [("count(dispatch_part_up == 0) or vector(0)", "down")], "none"),
    ("Deadline misses (24 h)", "stat", [("sum(dispatch_timeliness_misses)", "missed")], "none"),
    ("Normal operation by part (24 h)", "timeseries", [("dispatch_availability_ratio", "{{part}}")], "percentunit"),
    ("Timeliness by channel (24 h)", "timeseries", [("dispatch_timeliness_ratio", "{{channel}}")], "percentunit"),
    ("Parts up (kpi probes)", "timeseries", [("dispatch_part_up", "{{part}}")], "none"),
    ("Deadline misses by channel (24 h)", "timeseries", [("dispatch_timeliness_misses", "{{channel}}")], "none"),
    # (title, type, [(expr, legend)], unit)
    ("Control connections", "stat", [("dispatch_control_connections", "connections")], "none"),
    ("SIP workers up", "stat", [("dispatch_sip_workers_up", "up")], "none"),
    ("Terminals online", "stat", [("dispatch_terminals_online", "online")], "none"),
    ("Control requests by method and outcome", "timeseries",
     [("sum by (method, outcome) (rate(dispatch_control_requests_total[5m]))", "{{method}} {{outcome}}")], "reqps"),
    ("Control request latency p95 by method", "timeseries",
     [("histogram_quantile(0.95, sum by (le, method) (rate(dispatch_control_request_seconds_bucket[5m])))", "{{method}}")], "s"),
    ("Events stored by type", "timeseries",
     [("sum by (type) (rate(dispatch_events_stored_total[5m]))", "{{type}}")], "ops"),
    ("Event fan-out", "timeseries",
     [("dispatch_event_fanout_lag_events", "lag (events, most lagging subscriber)"),
      ("dispatch_event_fanout_lag_seconds", "lag (s, the oldest event not yet handed)"),
      ("dispatch_event_subscribers", "subscribers")], "none"),
    ("Live calls by state", "timeseries", [("dispatch_calls", "{{state}}")], "none"),
    ("Call setup time (creation to connected)", "timeseries",
     [("histogram_quantile(0.5, sum by (le, direction) (rate(dispatch_call_setup_seconds_bucket[5m])))", "p50 {{direction}}"),
      ("histogram_quantile(0.95, sum by (le, direction) (rate(dispatch_call_setup_seconds_bucket[5m])))", "p95 {{direction}}")], "s"),
    ("Calls entering a state", "timeseries",
     [("sum by (state) (rate(dispatch_call_transitions_total[5m]))", "{{state}}")], "ops"),
    ("Calls per SIP worker", "timeseries", [("dispatch_sip_worker_calls", "worker {{worker}}")], "none"),
    ("SIP worker restarts (1 h)", "timeseries",
     [("increase(dispatch_sip_worker_restarts_total[1h])", "worker {{worker}}")], "none"),
    ("Live broadcasts by state", "timeseries", [("dispatch_broadcasts", "{{state}}")], "none"),
    ("Broadcast targets by state", "timeseries",
     [("dispatch_broadcast_targets", "live {{state}}"),
      ("sum by (state) (rate(dispatch_broadcast_target_transitions_total[5m]))", "entering {{state}} /s"),
      ("sum by (state) (rate(dispatch_broadcast_transitions_total[5m]))", "broadcasts entering {{state}} /s")], "none"),
    ("SMS entering a state", "timeseries",
     [("sum by (state) (rate(dispatch_sms_transitions_total[5m]))", "{{state}}")], "ops"),
    ("SMS provider latency p95", "timeseries",
     [("histogram_quantile(0.95, sum by (le, provider, outcome) (rate(dispatch_sms_provider_seconds_bucket[5m])))", "{{provider}} {{outcome}}")], "s"),
    ("Webhook rejections (1 h)", "timeseries",
     [("sum by (path, status) (increase(dispatch_webhook_rejections_total[1h]))", "{{path}} {{status}}")], "none"),
    ("Video streams by state", "timeseries", [("dispatch_video_streams", "{{state}}")], "none"),
]
ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
panels = []
x = y = 0
for i, (title, typ, targets, unit) in enumerate(panels_spec, start=1):
    w, h = (6, 4) if typ == "stat" else (12, 8)
    if x + w > 24:
        x, y = 0, y + hprev
    panels.append({
        "id": i, "type": typ, "title": title, "datasource": ds,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, **({"min": 0, "max": 1, "thresholds": {"mode": "absolute", "steps": [
            {"color": "red", "value": None}, {"color": "green", "value": 0.98}]}} if unit == "percentunit" else {})},
            "overrides": []},
        "options": {} if typ == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(65 + j), "datasource": ds, "expr": e, "legendFormat": l}
                    for j, (e, l) in enumerate(targets)],
    })
    x += w
    hprev = h
dash = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "title": "dispatch-gateway", "uid": "dispatch-gateway", "description":
    "Metrics of dispatch-gateway's /metrics (docs/operations.md, Metrics), written by scripts/make_grafana_dashboard.py; every metric "
    "name is checked against a scrape of the gateway by tests/gateway/test_grafana_dashboard.py.",
    "tags": ["dispatch-gateway"], "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True,
    "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                             "query": "prometheus", "current": {}, "hide": 0}]},
    "annotations": {"list": []}, "links": [], "panels": panels,
}
open(Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json", "w").write(json.dumps(dash, indent=2) + "\n")
