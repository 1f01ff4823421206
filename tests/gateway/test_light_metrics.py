"""gateway/metrics/light.py: the hot paths' counters and histograms expose what prometheus_client's
own expose for the same observations, and moving them takes no lock of prometheus_client (before:
three locked increments a request, four a loop-lag wake-up)."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.values import MutexValue

from gateway.metrics.light import LightCounter, LightHistogram
from gateway.metrics.registry import LOOP_LAG_BUCKETS, REQUEST_BUCKETS, GatewayMetrics


def samples(registry: CollectorRegistry) -> set[tuple]:
    """Every sample but `_created` (a histogram here has none), labels as sorted pairs."""
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for fam in text_string_to_metric_families(generate_latest(registry).decode())
            for s in fam.samples if not s.name.endswith("_created")}


def test_the_same_observations_give_the_same_exposition_as_prometheus_client() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    hist = [Histogram("h", "doc", ("method",), buckets=REQUEST_BUCKETS, registry=theirs),
            LightHistogram("h", "doc", ("method",), buckets=REQUEST_BUCKETS, registry=ours)]
    lag = [Histogram("lag", "doc", buckets=LOOP_LAG_BUCKETS, registry=theirs),
           LightHistogram("lag", "doc", buckets=LOOP_LAG_BUCKETS, registry=ours)]
    count = [Counter("c", "doc", ("method", "outcome"), registry=theirs),
             LightCounter("c", "doc", ("method", "outcome"), registry=ours)]
    rnd = random.Random(7)
    values = [0.0, 0.001, 0.0025, 30.0, 31.0, *(rnd.expovariate(50) for _ in range(500))]  # on bounds too
    for v in values:
        method, outcome = rnd.choice(["ping", "session.list"]), rnd.choice(["ok", "error"])
        for h, g, c in zip(hist, lag, count):
            h.labels(method).observe(v)
            g.observe(v)
            c.labels(method, outcome).inc()
    assert samples(ours) == samples(theirs)
    at_most = float(sum(1 for v in values if v <= 0.0025))  # a value on a bound is in that bucket
    assert ("lag_bucket", (("le", "0.0025"),), at_most) in samples(ours) and at_most > 2
    text = generate_latest(ours).decode()
    assert "c_total{" in text and "c_created{" in text and "lag_count 505.0" in text


def test_requests_and_loop_lag_take_no_prometheus_client_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    locked = []
    real = MutexValue.inc
    monkeypatch.setattr(MutexValue, "inc", lambda self, amount: locked.append(amount) or real(self, amount))
    metrics = GatewayMetrics(methods=["ping"])
    for _ in range(100):
        metrics.observe_request("ping", "ok", 0.002)
        metrics.loop_lag.observe(0.001)
        metrics.loop_lag_own.observe(0.0005)
    assert locked == []  # before: 700
    text = metrics.render().decode()
    assert 'dispatch_control_requests_total{method="ping",outcome="ok"} 100.0' in text
    assert "dispatch_loop_lag_own_seconds_count 100.0" in text


def test_bad_use_is_refused() -> None:
    with pytest.raises(ValueError):
        LightHistogram("x", "doc", buckets=(0.5, 0.1))
    with pytest.raises(ValueError):
        LightCounter("y", "doc", ("a",)).labels("1", "2")
    with pytest.raises(ValueError):
        LightCounter("z", "doc", ("a",)).labels("1").inc(-1)
