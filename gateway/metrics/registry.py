"""`GatewayMetrics`: the gateway's Prometheus metrics in one registry of its own (not the process
global one: two gateways in one test process do not mix), and what feeds the counters.

Counters move where things happen: `observe_request` (the control server's hook), `on_events`
(a store listener: every stored event, in seq order, after its commit), `observe_sms_send` (the
SMS service around each provider call), the webhook middleware (gateway/metrics/http.py). What
is a state now (connections, calls, workers, terminals, streams...) is read when scraped
(gateway/metrics/collect.py). No label takes a value from outside a known set: method names not
in the method table are "other", event types likewise, states are the state machines' own
values; no label names a call, a number or a principal.

Other parts of the gateway export their own figures through `gauge()` (e.g. the service-level
indicators): a Gauge registered here, set by its owner.
"""

from __future__ import annotations

import array
import bisect
import collections
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.broadcast.machine import BroadcastState, TargetState
from gateway.metrics.light import LightCounter, LightHistogram
from gateway.state.call import CallState
from sms.outbox import MessageState

OTHER = "other"
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SETUP_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 5)
OUTCOMES = frozenset({"ok", "error", "internal", "rate-limited", "invalid"})
EVENT_TYPES = frozenset({
    "session.state", "call.state", "call.dtmf", "broadcast.state", "broadcast.target", "sms.status", "sms.inbound",
    "terminal.presence", "terminal.location", "terminal.feedback", "video.state", "video.recording",
    "voice.state", "sip.registration", "conference.member", "conference.recording", "conference.trunk",
    "events.overflow",
})
_TRACKED = 100_000  # calls / broadcasts not yet in a final state whose last state is remembered
_FINISHED = 1024  # ids that reached a final state, remembered so a re-published one is not counted again
_COMMITS = 50_000  # committed batches whose time is remembered (at most 2x that)
LAG_HORIZON_S = 900.0  # ... and only those of the last 15 minutes: an older seq's age is a lower bound


def bounded(value: Any, known: Iterable[str]) -> str:
    """`value` if it is one of `known`, else "other": a label never takes an unbounded value."""
    return value if isinstance(value, str) and value in known else OTHER


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


class _LastState:
    """The last state seen per id: a transition counts once, however often the same state is
    re-published. An id in a final state leaves the map for a short list of the last _FINISHED
    finished ids (a final state is the last: nothing after it counts), so the map holds the live
    ids, not every id since start (it grew by one entry per call for days before: soak, issue 12)."""

    def __init__(self, final: Iterable[str]) -> None:
        self._final_states = frozenset(final)
        self._states: OrderedDict[str, str] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states) + len(self._finished)

    def changed(self, key: Any, state: str) -> bool:
        key = str(key)
        if key in self._finished or self._states.get(key) == state:
            return False
        if state in self._final_states:
            self._states.pop(key, None)
            self._finished[key] = None
            if len(self._finished) > _FINISHED:
                self._finished.popitem(last=False)
            return True
        self._states[key] = state
        self._states.move_to_end(key)
        if len(self._states) > _TRACKED:
            self._states.popitem(last=False)
        return True


class GatewayMetrics:
    def __init__(self, methods: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.methods = frozenset(methods)  # the method table's names; others count as "other"
        r = self.registry
        # moved by every request and the loop-lag probe: plain numbers (gateway/metrics/light.py)
        self.requests = LightCounter("dispatch_control_requests", "Control-channel requests by method and outcome",
                                     ("method", "outcome"), registry=r)
        self.request_seconds = LightHistogram("dispatch_control_request_seconds",
                                              "Time to answer a control-channel request", ("method",),
                                              buckets=REQUEST_BUCKETS, registry=r)
        self.events = Counter("dispatch_events_stored", "Events stored, by type", ("type",), registry=r)
        self.calls = Counter("dispatch_call_transitions", "Calls entering a state", ("direction", "state"),
                             registry=r)
        self.call_setup = Histogram("dispatch_call_setup_seconds", "From a call's creation to connected",
                                    ("direction",), buckets=SETUP_BUCKETS, registry=r)
        self.broadcasts = Counter("dispatch_broadcast_transitions", "Broadcasts entering a state", ("state",),
                                  registry=r)
        self.targets = Counter("dispatch_broadcast_target_transitions", "Broadcast targets entering a state",
                               ("state",), registry=r)
        self.sms = Counter("dispatch_sms_transitions", "SMS messages entering a state", ("state",), registry=r)
        self.sms_send = Histogram("dispatch_sms_provider_seconds", "Time the SMS provider took to take a message",
                                  ("provider", "outcome"), buckets=PROVIDER_BUCKETS, registry=r)
        self.loop_lag = LightHistogram("dispatch_loop_lag_seconds",
                                       "How late the event loop ran a 10 ms timer (gateway/loop_lag.py): its stalls",
                                       buckets=LOOP_LAG_BUCKETS, registry=r)
        self.loop_lag_own = LightHistogram("dispatch_loop_lag_own_seconds",
                                           "The part of the loop's lateness its own work explains: at most the CPU "
                                           "its thread used meanwhile (not the waits for a core)",
                                           buckets=LOOP_LAG_BUCKETS, registry=r)
        self.webhook_rejections = Counter("dispatch_webhook_rejections", "Provider webhooks refused, by path and status",
                                          ("path", "status"), registry=r)
        self._call_states = _LastState((CallState.ENDED.value,))
        self._broadcast_states = _LastState((BroadcastState.ENDED.value,))
        # (last seq, monotonic time) of each committed batch of the last LAG_HORIZON_S (at most
        # 2 x _COMMITS): how long ago a seq was stored, for the fan-out lag in seconds. Machine
        # values in two arrays, 16 bytes a commit: as lists of int and float objects they took
        # ~70 bytes a commit, spread over the heap (~1 MB at a soak's rate; issue 12).
        self._commit_seqs = array.array("q")
        self._commit_times = array.array("d")
        # The request series by their bounded labels (methods x outcomes at most): prometheus_client's
        # labels() per request was 3-4 % of the control loop's busy time (issue 13).
        self._request_counts: dict[tuple[str, str], Any] = {}
        self._request_times: dict[str, Any] = {}

    # -- hooks ------------------------------------------------------------------------------
    def method_label(self, method: Any) -> str:
        return bounded(method, self.methods)

    def observe_request(self, method: str, outcome: str, seconds: float | None) -> None:
        """One control-channel request answered (`seconds` None: refused before it ran)."""
        m, o = self.method_label(method), bounded(outcome, OUTCOMES)
        count = self._request_counts.get((m, o))
        if count is None:
            count = self._request_counts[(m, o)] = self.requests.labels(m, o)
        count.inc()
        if seconds is not None:
            times = self._request_times.get(m)
            if times is None:
                times = self._request_times[m] = self.request_seconds.labels(m)
            times.observe(seconds)

    def observe_sms_send(self, provider: str, outcome: str, seconds: float) -> None:
        self.sms_send.labels(bounded(provider, ("twilio", "smpp")), bounded(outcome, ("ok", "error"))).observe(seconds)

    def on_events(self, events: Sequence[Any]) -> None:
        """Store listener: every stored event, in order, once committed."""
        if events:
            now = time.monotonic()
            self._commit_seqs.append(events[-1].seq)
            self._commit_times.append(now)
            times = self._commit_times
            if len(times) > 2 * _COMMITS or now - times[0] > 2 * LAG_HORIZON_S:  # pruned in chunks
                keep = max(bisect.bisect_left(times, now - LAG_HORIZON_S), len(times) - _COMMITS)
                del self._commit_seqs[:keep], self._commit_times[:keep]
        # Counted per label, then one labels().inc(n) each: a commit of 500 `sms.status` events is
        # two lookups of a labelled child, not 1,000 (each takes the metric's lock).
        types: collections.Counter[str] = collections.Counter()
        sms: collections.Counter[str] = collections.Counter()
        for ev in events:
            types[bounded(ev.type, EVENT_TYPES)] += 1
            data = ev.data
            if ev.type == "call.state":
                self._call(data)
            elif ev.type == "broadcast.state" and isinstance(data.get("state"), str):
                if self._broadcast_states.changed(data.get("broadcast_id"), data["state"]):
                    self.broadcasts.labels(bounded(data["state"], _BROADCAST_STATES)).inc()
            elif ev.type == "broadcast.target":
                self.targets.labels(bounded(data.get("state"), _TARGET_STATES)).inc()
            elif ev.type == "sms.status":
                sms[bounded(data.get("state"), _SMS_STATES)] += 1
        for label, n in types.items():
            self.events.labels(label).inc(n)
        for label, n in sms.items():
            self.sms.labels(label).inc(n)

    def _call(self, data: dict[str, Any]) -> None:
        state = data.get("state")
        if not isinstance(state, str) or not self._call_states.changed(data.get("call_id"), state):
            return
        direction = bounded(data.get("direction"), ("inbound", "outbound"))
        self.calls.labels(direction, bounded(state, _CALL_STATES)).inc()
        if state == "connected":
            setup = _seconds_between(data.get("created_at"), data.get("answered_at"))
            if setup is not None and setup >= 0:
                self.call_setup.labels(direction).observe(setup)

    def stored_ago(self, seq: int) -> float | None:
        """Seconds since `seq` was committed: the time of the first remembered batch ending at or
        after it (for a seq older than them all, a lower bound); None if it is not stored yet."""
        i = bisect.bisect_left(self._commit_seqs, seq)
        return time.monotonic() - self._commit_times[i] if i < len(self._commit_seqs) else None

    # -- for other parts --------------------------------------------------------------------
    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        """A gauge of this registry, set by its owner (e.g. the service-level indicators). Its
        label values must come from a bounded set, like every label here."""
        return Gauge(name, documentation, tuple(labelnames), registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)


_CALL_STATES = frozenset(s.value for s in CallState)
_BROADCAST_STATES = frozenset(s.value for s in BroadcastState)
_TARGET_STATES = frozenset(s.value for s in TargetState)
_SMS_STATES = frozenset(s.value for s in MessageState)
