"""Prometheus metrics of the gateway: registry.py (`GatewayMetrics`: the registry, the counters and
what feeds them, `gauge()` for other parts), collect.py (`GatewayCollector`: states read when
scraped), http.py (GET /metrics and who may read it; the webhook-rejection middleware)."""

from .collect import GatewayCollector
from .http import METRICS_PATH, metrics_route, webhook_rejections
from .registry import GatewayMetrics, bounded

__all__ = ["GatewayCollector", "GatewayMetrics", "METRICS_PATH", "bounded", "metrics_route", "webhook_rejections"]
