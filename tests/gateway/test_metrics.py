"""/metrics of a real gateway (issue 12), scraped over HTTP and parsed with prometheus_client's
own parser after real actions: the gateway process (`dispatch-gateway serve`) after a call
answered by SIPp, an SMS through the Twilio stub (and its signed status callback), a webhook with
no signature and control requests; a SIP worker killed -9. The counters moved. A flood of unknown
method names keeps the label sets bounded."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from gateway.config import load_config
from gateway.exposure import log_exposure_warnings
from gateway.metrics import GatewayMetrics, metrics_route
from gateway.metrics.http import allowed
from gateway.metrics.registry import EVENT_TYPES
from gateway.store import Event
from sms.twilio import STATUS_PATH
from gateway.client import GatewayClient
from tests.gateway.gateway_proc import GatewayProc
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.sipp import free_port_block, sipp_uas
from tests.peers.twilio_stub import twilio_stub

pytestmark = pytest.mark.peers


async def scrape(port: int, headers: dict | None = None) -> dict[str, list]:
    """{sample name: [(labels, value), ...]} of one scrape."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r.status
        text = await r.text()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(scraped: dict[str, list], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    return sum(v for lab, v in scraped.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


async def test_counters_move_after_real_actions(watch, tmp_path) -> None:
    """The gateway as its own process (`dispatch-gateway serve`), its http port scraped."""
    async with twilio_stub(SID, TOKEN) as stub:
        base = free_port_block(span=40)
        public = f"http://127.0.0.1:{base + 1}"
        gw = GatewayProc({"gateway.data_dir": str(tmp_path / "data"), "gateway.log_format": "json",
                          "control.port": base, "http.port": base + 1, "sip.port": base + 2,
                          "sip.worker_base_port": base + 10,
                          "sip.rtp_port_base": free_port_block(span=10, tcp=False), "sip.max_workers": 1,
                          "sip.log_dir": str(tmp_path / "sip"), "sms.provider": "twilio",
                          "sms.twilio.account_sid": SID, "sms.twilio.auth_token": TOKEN,
                          "sms.twilio.api_base": stub.url, "sms.twilio.public_url": public}, tmp_path)
        await gw.start()
        alice = None
        try:
            http_port = base + 1
            before = await scrape(http_port)
            assert value(before, "dispatch_sip_workers_up") == 1
            alice = await GatewayClient.connect(gw.url, "tok-dispatcher", reconnect=False)
            w = await watch(alice)
            # a call to SIPp, answered, then hung up
            async with sipp_uas("answer") as uas:
                call = await alice.call("call.dial", target=uas.uri)
                await w.call_state(call["call_id"], "connected", 20)
                mid = await scrape(http_port)
                assert value(mid, "dispatch_calls", state="connected") == 1
                await alice.call("call.hangup", call_id=call["call_id"])
                await w.call_state(call["call_id"], "ended", 20)
            # an SMS through the Twilio stub, to its final status (the stub's signed callback)
            sent = await alice.call("sms.send", to=["+15551230001"], body="report to the dike")
            await w.wait(lambda e: e["type"] == "sms.status" and e["data"]["state"] == "delivered", 20)
            # a forged webhook (no signature): refused 403
            async with aiohttp.ClientSession() as s, s.post(public + STATUS_PATH, data={"MessageSid": "SM1"}) as r:
                assert r.status == 403
            await alice.call("session.list")
            after = await scrape(http_port)
        finally:
            if alice is not None:
                await alice.close()
            await gw.stop()
    assert value(after, "dispatch_control_connections") >= 1
    for method in ("call.dial", "call.hangup", "sms.send", "session.list", "hello", "events.subscribe"):
        assert value(after, "dispatch_control_requests_total", method=method, outcome="ok") \
            - value(before, "dispatch_control_requests_total", method=method, outcome="ok") >= 1, method
    assert value(after, "dispatch_control_request_seconds_count", method="call.dial") >= 1
    assert value(after, "dispatch_call_transitions_total", direction="outbound", state="connected") == 1
    assert value(after, "dispatch_call_transitions_total", direction="outbound", state="ended") == 1
    assert value(after, "dispatch_call_setup_seconds_count", direction="outbound") == 1
    assert 0 < value(after, "dispatch_call_setup_seconds_sum") < 20
    assert value(after, "dispatch_calls", state="connected") == 0
    assert value(after, "dispatch_sms_transitions_total", state="sent") == 1
    assert value(after, "dispatch_sms_transitions_total", state="delivered") == 1
    assert value(after, "dispatch_sms_provider_seconds_count", provider="twilio", outcome="ok") == 1
    assert value(after, "dispatch_webhook_rejections_total", path=STATUS_PATH, status="403") == 1
    assert value(after, "dispatch_events_stored_total", type="call.state") >= 3
    assert value(after, "dispatch_events_last_seq") >= value(after, "dispatch_events_stored_total")
    assert value(after, "dispatch_event_subscribers") >= 1
    assert "dispatch_event_fanout_lag_seconds" in after and "dispatch_event_fanout_lag_events" in after
    for lag in ("dispatch_loop_lag_seconds_count", "dispatch_loop_lag_own_seconds_count"):
        assert value(after, lag) > value(before, lag)
    assert sent["recipients"] == 1


async def test_a_killed_worker_is_counted_restarted(start_gateway) -> None:
    gw = await start_gateway(**{"sip.max_workers": 1})
    assert value(await scrape(gw.http_port), "dispatch_sip_worker_restarts_total", worker="0") == 0
    os.kill(gw.sip.worker_pid(0), signal.SIGKILL)  # a child of the gateway this test started
    async with asyncio.timeout(30):
        while value(scraped := await scrape(gw.http_port), "dispatch_sip_worker_restarts_total", worker="0") < 1:
            await asyncio.sleep(0.1)
    assert value(scraped, "dispatch_sip_worker_restarts_total") == 1
    assert value(scraped, "dispatch_sip_workers_up") == 1


async def test_unknown_method_names_do_not_grow_the_label_set(start_gateway, connect) -> None:
    gw = await start_gateway(**{"control.request_budget.dispatcher": "{rate = 1000, burst = 1000}"})
    alice = await connect(gw)
    known = set(gw.registry.methods) | {"other"}
    for i in range(300):
        with pytest.raises(Exception):
            await alice.call(f"no.such.{secrets.token_hex(4)}.{i}")
    scraped = await scrape(gw.http_port)
    seen = {lab["method"] for lab, _ in scraped["dispatch_control_requests_total"]}
    assert seen <= known, seen - known
    assert value(scraped, "dispatch_control_requests_total", method="other", outcome="error") == 300
    assert len(scraped["dispatch_control_requests_total"]) < 10  # hello, the "other" errors: not 300 series
    assert {lab["method"] for lab, _ in scraped["dispatch_control_request_seconds_count"]} <= known


async def test_the_route_refuses_a_remote_client_without_the_token() -> None:
    """A peer beyond loopback cannot be made here (tests stay on loopback): the route is given a
    request whose transport reports a LAN peer (aiohttp's own mocked request)."""
    metrics = GatewayMetrics()
    _, _, serve = metrics_route(metrics, token="s" * 24)
    _, _, serve_no_token = metrics_route(metrics, token=None)

    def request(peer: str, **headers: str):
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
        return make_mocked_request("GET", "/metrics", headers=headers, transport=transport)

    assert (await serve(request("192.0.2.7"))).status == 401
    assert (await serve(request("192.0.2.7", Authorization="Bearer nope"))).status == 401
    assert (await serve_no_token(request("192.0.2.7", Authorization="Bearer " + "s" * 24))).status == 403
    ok = await serve(request("192.0.2.7", Authorization="Bearer " + "s" * 24))
    assert ok.status == 200 and b"dispatch_control_requests" in ok.body
    assert (await serve_no_token(request("127.0.0.1"))).status == 200


def test_who_may_read_metrics() -> None:
    assert allowed("127.0.0.1", None, None) and allowed("::1", None, "t" * 20)
    assert not allowed("10.1.2.3", None, None)  # beyond loopback without a token configured: never
    assert not allowed("10.1.2.3", "Bearer " + "t" * 20, None)
    assert not allowed("10.1.2.3", "Bearer wrong", "t" * 20) and not allowed("10.1.2.3", None, "t" * 20)
    assert allowed("10.1.2.3", "Bearer " + "t" * 20, "t" * 20)


def test_every_event_type_the_gateway_stores_is_a_label() -> None:
    """A type missing from EVENT_TYPES would be counted as "other": every literal type published or
    emitted in the code is known."""
    root = Path(__file__).resolve().parents[2]
    found = {m for pkg in ("gateway", "sms", "video", "sip") for f in (root / pkg).rglob("*.py")
             for m in re.findall(r'(?:publish|emit|emit_many)\(\s*"([a-z_]+\.[a-z_.]+)"', f.read_text())}
    assert "call.state" in found and len(found) >= 15
    assert found <= EVENT_TYPES, found - EVENT_TYPES


def test_a_request_looks_its_series_up_once(monkeypatch) -> None:
    """prometheus_client's labels() (a lock, a tuple, a dict) is called once per method and
    outcome, not per request (before: twice per request); what is counted is unchanged."""
    metrics = GatewayMetrics(methods=["ping", "session.list"])
    calls = []
    for family in (metrics.requests, metrics.request_seconds):
        real = family.labels
        monkeypatch.setattr(family, "labels", lambda *a, real=real: calls.append(a) or real(*a))
    for _ in range(50):
        metrics.observe_request("ping", "ok", 0.002)
        metrics.observe_request("session.list", "ok", 0.02)
        metrics.observe_request("no.such", "error", 0.001)
        metrics.observe_request("ping", "rate-limited", None)
    assert len(calls) == 7  # before: 350
    text = metrics.render().decode()
    assert 'dispatch_control_requests_total{method="ping",outcome="ok"} 50.0' in text
    assert 'dispatch_control_requests_total{method="ping",outcome="rate-limited"} 50.0' in text
    assert 'dispatch_control_requests_total{method="other",outcome="error"} 50.0' in text
    assert 'dispatch_control_request_seconds_count{method="ping"} 50.0' in text
    assert 'dispatch_control_request_seconds_count{method="session.list"} 50.0' in text


def test_a_state_republished_counts_once() -> None:
    metrics = GatewayMetrics()
    ev = [Event(i, "call.state", "t", None, {"call_id": "c1", "direction": "outbound", "state": s,
                                             "created_at": "2026-12-02T03:00:00.000Z",
                                             "answered_at": "2026-12-02T03:00:01.500Z"})
          for i, s in enumerate(["dialing", "connected", "connected", "ended", "ended"], start=1)]
    metrics.on_events(ev)
    text = metrics.render().decode()
    assert 'dispatch_call_transitions_total{direction="outbound",state="connected"} 1.0' in text
    assert 'dispatch_call_transitions_total{direction="outbound",state="ended"} 1.0' in text
    assert "dispatch_call_setup_seconds_sum{direction=\"outbound\"} 1.5" in text


def test_ended_calls_and_broadcasts_leave_the_last_state_maps() -> None:
    """Soak (issue 12): every call's last state stayed in the map, up to 100,000 ids (about 20 MB,
    days of calls). Ended ones leave it: after 5,000 ended calls and 500 ended broadcasts it holds
    the live ones and a short list of the last finished, not every id since start."""
    from gateway.metrics.registry import _FINISHED

    metrics = GatewayMetrics()
    seq = 0

    def ev(kind: str, data: dict) -> Event:
        nonlocal seq
        seq += 1
        return Event(seq, kind, "t", None, data)

    for i in range(5000):
        metrics.on_events([ev("call.state", {"call_id": f"c{i}", "direction": "outbound", "state": s})
                           for s in ("dialing", "ringing", "connected", "ended")])
    for i in range(500):
        metrics.on_events([ev("broadcast.state", {"broadcast_id": f"b{i}", "state": s})
                           for s in ("starting", "active", "ended")])
    metrics.on_events([ev("call.state", {"call_id": "live", "direction": "inbound", "state": "ringing"})])
    assert len(metrics._call_states) <= _FINISHED + 1
    assert len(metrics._broadcast_states) <= 500
    # Counted once each, and an ended call re-published is still not counted again.
    metrics.on_events([ev("call.state", {"call_id": "c4999", "direction": "outbound", "state": "ended"})])
    text = metrics.render().decode()
    assert 'dispatch_call_transitions_total{direction="outbound",state="ended"} 5000.0' in text
    assert 'dispatch_broadcast_transitions_total{state="ended"} 500.0' in text


def test_commit_times_are_kept_for_the_lag_horizon_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Soak (issue 12): the time of every committed batch was kept up to 100,000 of them (hours of
    commits at a soak's rate). Now those of the last LAG_HORIZON_S, at most twice that: 20,000
    commits over 2 hours leave the last half hour's at most, and the lag of an old seq is a lower bound."""
    from gateway.metrics import registry

    now = [1000.0]
    monkeypatch.setattr(registry.time, "monotonic", lambda: now[0])
    metrics = GatewayMetrics()
    for seq in range(1, 20_001):
        now[0] += 7200 / 20_000
        metrics.on_events([Event(seq, "session.state", "t", None, {})])
    per_s = 20_000 / 7200
    assert len(metrics._commit_seqs) == len(metrics._commit_times) <= 2 * registry.LAG_HORIZON_S * per_s + 1
    assert metrics.stored_ago(20_000) == pytest.approx(0.0)
    assert metrics.stored_ago(19_000) == pytest.approx(1000 * 7200 / 20_000)
    assert metrics.stored_ago(1) >= registry.LAG_HORIZON_S  # older than every remembered batch


def test_an_http_port_beyond_loopback_says_metrics_stay_loopback_only() -> None:
    tokens = 'auth.tokens={"tok-1234567890abcdef" = {principal = "a", role = "admin"}}'
    with capture_logs() as logs:
        log_exposure_warnings(load_config(None, {}, ["http.host=192.0.2.10", tokens]))
    assert [e["key"] for e in logs if e["event"] == "gateway.metrics-loopback-only"] == ["metrics.token"]
    with capture_logs() as logs:
        log_exposure_warnings(load_config(None, {"DISPATCH_GATEWAY__METRICS__TOKEN": "m" * 24},
                                          ["http.host=192.0.2.10", tokens]))
    assert not [e for e in logs if e["event"] == "gateway.metrics-loopback-only"]


async def test_fan_out_lag_in_events_and_seconds(tmp_path) -> None:
    """A subscriber that does not read: the lag grows in events, and the age of the event it
    waits for is measured from its commit; once it has read everything, no lag."""
    from gateway.events import EventBus
    from gateway.store import Store

    async with Store(tmp_path / "gw.db") as store:
        metrics = GatewayMetrics()
        store.add_listener(metrics.on_events)
        bus = EventBus(store)
        sub = bus.subscribe(0)
        assert bus.fan_out_lag() == (0, None)
        t0 = asyncio.get_running_loop().time()
        for i in range(5):
            await bus.publish("session.state", {"i": i})
        behind, waiting_for = bus.fan_out_lag()
        assert (behind, waiting_for) == (5, 1)
        ago = metrics.stored_ago(waiting_for)
        assert ago is not None and 0 <= ago <= asyncio.get_running_loop().time() - t0
        async with asyncio.timeout(10):
            async for ev in sub:
                if ev.seq == 5:
                    break
        assert bus.fan_out_lag() == (0, None)
        assert metrics.stored_ago(6) is None  # not stored yet
        sub.close()
        bus.close()


def test_a_commit_of_sms_events_counts_each_label_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit of N `sms.status` events moves the counters by N with one labelled-child lookup
    per label (before: two per event, each under the metric's lock: 7 % of the gateway's Python
    time at 1,000 SMPP messages/s)."""
    from prometheus_client.metrics import MetricWrapperBase

    metrics = GatewayMetrics()
    looked_up = 0
    labels = MetricWrapperBase.labels

    def counted(self, *a, **k):
        nonlocal looked_up
        looked_up += 1
        return labels(self, *a, **k)

    monkeypatch.setattr(MetricWrapperBase, "labels", counted)
    states = ["sending"] * 300 + ["sent"] * 200 + [["not", "a", "state"]]
    metrics.on_events([Event(i, "sms.status", "t", None, {"state": s}) for i, s in enumerate(states, start=1)])
    assert looked_up == 1 + 3  # events{type}, sms{state} for sending, sent, other
    text = metrics.render().decode()
    assert 'dispatch_sms_transitions_total{state="sending"} 300.0' in text
    assert 'dispatch_sms_transitions_total{state="sent"} 200.0' in text
    assert 'dispatch_sms_transitions_total{state="other"} 1.0' in text
    assert 'dispatch_events_stored_total{type="sms.status"} 501.0' in text


def test_commit_times_take_16_bytes_a_commit() -> None:
    """Soak (issue 12): the commit times of the lag horizon were lists of int and float objects,
    ~70 bytes a commit of the heap (10,000 commits: ~500 kB); two arrays of machine values now."""
    import tracemalloc

    metrics = GatewayMetrics()
    metrics.on_events([Event(999_999, "session.state", "t", None, {})])  # the labelled series made first
    events = [[Event(seq, "session.state", "t", None, {})] for seq in range(1_000_000, 1_010_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for batch in events:
            metrics.on_events(batch)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(metrics._commit_seqs) == 10_001
    assert held < 10_000 * 32, held  # 16 a commit and the arrays' spare room; 50 before
