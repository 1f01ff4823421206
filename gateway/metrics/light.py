"""Counters and histograms for the event loop's hot paths, kept as plain numbers and turned into
Prometheus families only when /metrics is scraped.

prometheus_client's own `Counter.inc` and `Histogram.observe` take a lock for every value they
move and walk the buckets in Python: a control request moved three (its count, its time's
bucket and sum) and the loop-lag probe four, 100 times a second; with the probe's task and
timer that was 5-6 % of the gateway's CPU in workload (a) (issue 13, docs/benchmarks.md). Here
an observation is a bisect and two additions. They are moved from the event loop's thread only
(the control server, the loop-lag probe); a scrape, from any thread, copies a child's counts
before summing them, so what it shows is at worst one observation behind.

The exposition is prometheus_client's for the same families (`_total`, `_bucket{le=...}`, `_sum`,
`_count`; a counter's `_created`), except that a histogram here has no `_created` series.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # a bucket holds values <= its bound
        self.sum += value


class CounterChild:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class _Family:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}
        if registry is not None:
            registry.register(self)

    def _child(self, values: tuple[str, ...]) -> object:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values wanted, got {len(values)}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new()
        return child

    def _new(self) -> object:
        raise NotImplementedError

    def describe(self) -> list[Metric]:  # the registry checks names with this, not with collect()
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class LightHistogram(_Family):
    """A histogram (with labels, or one series when it has none: `observe` directly)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: CollectorRegistry | None = None) -> None:
        bounds = tuple(float(b) for b in buckets)
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("buckets must be increasing")
        self.bounds = bounds[:-1] if bounds[-1] == float("inf") else bounds
        super().__init__(name, documentation, labelnames, registry)
        if not self.labelnames:
            self.observe = self.labels().observe

    def labels(self, *values: str) -> HistogramChild:
        return self._child(values)  # type: ignore[return-value]

    def _new(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            counts, total, buckets = list(child.counts), 0, []  # type: ignore[attr-defined]
            for bound, n in zip(self.bounds, counts):
                total += n
                buckets.append((floatToGoString(bound), float(total)))
            buckets.append(("+Inf", float(total + counts[-1])))
            family.add_metric(list(values), buckets, child.sum)  # type: ignore[attr-defined]
        yield family


class LightCounter(_Family):
    """A counter with labels (its exposition name gets `_total`, as prometheus_client's)."""

    def labels(self, *values: str) -> CounterChild:
        return self._child(values)  # type: ignore[return-value]

    def _new(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value, created=child.created)  # type: ignore[attr-defined]
        yield family
