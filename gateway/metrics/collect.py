"""What /metrics reads when scraped: the gateway's state now, from the services' own records
(no copy kept here, so it cannot drift): control connections, event subscribers and their lag,
live calls by state, SIP workers (up, calls, restarts), live broadcasts and their targets by
state, terminals online, video streams by state, the SMS provider's bind (SMPP).

`GatewayCollector` is a prometheus_client custom collector; `collect()` runs in the scrape
handler on the loop and only reads in-memory state (no I/O, no await)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.broadcast.machine import BroadcastState, TargetState
from gateway.state.call import CallState
from gateway.state.video import StreamState
from gateway.terminals.presence import Presence

if TYPE_CHECKING:
    from gateway.app import Gateway

    from .registry import GatewayMetrics


def _by_state(name: str, doc: str, counts: Tally, states: Any, label: str = "state") -> GaugeMetricFamily:
    """One sample per known state (0 included: a series does not vanish when it empties)."""
    g = GaugeMetricFamily(name, doc, labels=[label])
    for s in states:
        g.add_metric([s.value], counts.get(s.value, 0))
    return g


class GatewayCollector:
    def __init__(self, gw: Gateway, metrics: GatewayMetrics) -> None:
        self._gw, self._metrics = gw, metrics

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the names are fixed below

    def collect(self) -> Iterator[Metric]:
        gw = self._gw
        yield GaugeMetricFamily("dispatch_control_connections", "Open control-channel connections",
                                value=len(gw.control.connections))
        yield GaugeMetricFamily("dispatch_event_subscribers", "Live event subscriptions", value=gw.bus.subscriber_count)
        behind, waiting_for = gw.bus.fan_out_lag()
        yield GaugeMetricFamily("dispatch_event_fanout_lag_events",
                                "Stored events the most lagging subscriber has yet to be handed", value=behind)
        ago = self._metrics.stored_ago(waiting_for) if waiting_for is not None else None
        yield GaugeMetricFamily("dispatch_event_fanout_lag_seconds",
                                "How long ago the oldest event a subscriber has yet to be handed was stored",
                                value=ago or 0.0)
        yield GaugeMetricFamily("dispatch_events_last_seq", "Seq of the last stored event", value=gw.bus.last_seq)
        yield _by_state("dispatch_calls", "Live calls by state",
                        Tally(c["state"] for c in gw.calls.list_live()), CallState)
        yield from self._sip()
        live = gw.broadcasts.live_public()
        yield _by_state("dispatch_broadcasts", "Live broadcasts by state", Tally(b["state"] for b in live),
                        BroadcastState)
        targets: Tally = Tally()
        for b in live:
            targets.update(b.get("targets") or {})
        yield _by_state("dispatch_broadcast_targets", "Targets of live broadcasts by state", targets, TargetState)
        yield GaugeMetricFamily("dispatch_terminals_online", "Field terminals online",
                                value=sum(1 for p in gw.terminals.presence.all() if p.state is Presence.ONLINE))
        yield _by_state("dispatch_video_streams", "Video streams by state",
                        Tally(s.state.value for s in gw.video.streams.values()), StreamState)
        provider = gw.sms.provider
        if provider is not None and hasattr(provider, "bound"):
            yield GaugeMetricFamily("dispatch_sms_smpp_bound", "1 while bound to the SMSC", value=int(provider.bound))

    def _sip(self) -> Iterator[Metric]:
        stats = self._gw.sip.stats()["workers"]
        yield GaugeMetricFamily("dispatch_sip_workers_up", "SIP worker processes up",
                                value=sum(1 for w in stats.values() if w["up"]))
        calls = GaugeMetricFamily("dispatch_sip_worker_calls", "Calls held by each SIP worker", labels=["worker"])
        for i, w in sorted(stats.items()):
            calls.add_metric([str(i)], w["calls"])
        yield calls
        restarts = CounterMetricFamily("dispatch_sip_worker_restarts", "SIP workers restarted after a crash or stall",
                                       labels=["worker"])
        for i in range(self._gw.config.sip.max_workers):  # the index is bounded by sip.max_workers
            restarts.add_metric([str(i)], self._gw.sip.worker_restarts.get(i, 0))
        yield restarts
