"""The two indicators on /metrics, through the metrics registry's `gauge()` hook
(gateway/metrics/registry.py): each part's state now, and the figures of the last 24 hours,
refreshed every `kpi.metrics_interval_s` from the store like `kpi.get`. Labels come from fixed
sets: the parts, the channels, "whole" and "all"."""

from __future__ import annotations

import math
from typing import Any

from .timeliness import CHANNELS

WINDOW_S = 86400.0


def _ratio(v: float | None) -> float:
    return math.nan if v is None else v


class KpiGauges:
    def __init__(self, metrics: Any) -> None:
        self.part_up = metrics.gauge("dispatch_part_up", "1 while the part is up, 0 while down (kpi probes)",
                                     ["part"])
        self.availability = metrics.gauge(
            "dispatch_availability_ratio", "Normal operation over the last 24 h (kpi.get): per part and the whole",
            ["part"])
        self.timeliness = metrics.gauge(
            "dispatch_timeliness_ratio", "Share of dispatch targets reached within their deadline over the last"
            " 24 h (kpi.get): per channel and all", ["channel"])
        self.misses = metrics.gauge("dispatch_timeliness_misses", "Targets that missed their deadline over the"
                                    " last 24 h, per channel", ["channel"])

    def set_part(self, part: str, up: bool) -> None:
        self.part_up.labels(part).set(1 if up else 0)

    def set_figures(self, result: dict[str, Any]) -> None:
        a, t = result["availability"], result["timeliness"]
        self.availability.labels("whole").set(_ratio(a["whole"]["availability"]))
        for part, v in a["parts"].items():
            self.availability.labels(part).set(_ratio(v["availability"]))
        self.timeliness.labels("all").set(_ratio(t["share"]))
        for channel in CHANNELS:
            c = t["channels"][channel]
            self.timeliness.labels(channel).set(_ratio(c["share"]))
            self.misses.labels(channel).set(c["missed"])
