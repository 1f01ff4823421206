"""Calls through the whole gateway (control channel -> services -> SIP workers) against SIPp."""

from __future__ import annotations

import re

import pytest

from gateway.client import RemoteError
from tests.peers.sipp import sipp_uac, sipp_uas

pytestmark = pytest.mark.peers


async def test_dial_answer_hangup_with_cdr(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_uas("answer") as uas:
        call = await alice.call("call.dial", target=uas.uri, display_name="Flood desk",
                                headers={"X-Incident": "F-17"})
        # the reply carries the state when it was built: a fast 180 (a loaded machine) makes it ringing;
        # the event stream below must still start at dialing
        assert call["state"] in ("dialing", "ringing") and call["direction"] == "outbound"
        connected = await w.call_state(call["call_id"], "connected")
        assert connected["sip_code"] == 200 and connected["answered_at"]
        await alice.call("call.hangup", call_id=call["call_id"])
        ended = await w.call_state(call["call_id"], "ended")
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (1, 0)
    assert "X-Incident: F-17" in res.messages and '"Flood desk"' in res.messages
    offer = res.messages.split("INVITE sip:", 1)[1].split("SIP/2.0 100", 1)[0]
    for codec in ("PCMU/8000", "PCMA/8000", "G722/8000"):  # G.722's RTP clock is 8000 (RFC 3551)
        assert re.search(rf"a=rtpmap:\d+ {codec}", offer), codec
    assert ended["cause"] == "local-hangup"
    states = w.states(call["call_id"])
    assert states[0] == "dialing" and "connected" in states
    assert states[-1] == "ended" and states.count("ended") == 1
    # The call detail record, through the session it was placed in.
    session = await alice.call("session.get", session_id=call["session_id"])
    (cdr,) = session["calls"]
    assert cdr["call_id"] == call["call_id"]
    assert cdr["remote_uri"] == uas.uri and cdr["direction"] == "outbound"
    assert cdr["state"] == "ended" and cdr["cause"] == "local-hangup" and cdr["sip_code"] == 200
    assert cdr["created_at"] <= cdr["answered_at"] <= cdr["ended_at"]
    audit = await gw.store.list_audit(principal="alice")
    assert {"call.dial", "call.hangup", "session.get"} <= {a["method"] for a in audit}


async def test_dial_busy_is_recorded(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_uas("busy") as uas:
        call = await alice.call("call.dial", target=uas.uri, idempotency_key="busy-1")
        repeat = await alice.call("call.dial", target=uas.uri, idempotency_key="busy-1")
        assert repeat["call_id"] == call["call_id"]  # the first result; no second INVITE
        ended = await w.call_state(call["call_id"], "ended")
        res = await uas.wait(10)
    assert res.returncode == 0 and res.successful == 1 and res.count("INVITE sip:") == 1
    assert (ended["sip_code"], ended["cause"]) == (486, "busy")
    assert len(await gw.store.list_calls()) == 1
    assert (await gw.store.get_call(call["call_id"]))["cause"] == "busy"


async def test_dial_no_answer_times_out(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_uas("no-answer") as uas:
        call = await alice.call("call.dial", target=uas.uri, timeout_s=1.5)
        await w.call_state(call["call_id"], "ringing")
        ended = await w.call_state(call["call_id"], "ended", timeout=15)
        res = await uas.wait(10)
    assert ended["cause"] == "no-answer"
    assert res.returncode == 0 and res.count("CANCEL sip:") >= 1


async def test_inbound_call_announced_and_answered(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    olga = await connect(gw, "tok-observer")
    w = await watch(alice)
    wo = await watch(olga)
    cfg = gw.config.sip
    async with sipp_uac(f"{cfg.host}:{cfg.port}", hold_ms=1000) as uac:
        ringing = await w.call_state(None, "ringing")
        assert ringing["direction"] == "inbound" and ringing["remote_uri"]
        await wo.call_state(ringing["call_id"], "ringing")  # observers see it too
        with pytest.raises(RemoteError) as err:  # ...but may not answer it
            await olga.call("call.answer", call_id=ringing["call_id"])
        assert err.value.reason == "forbidden"
        await alice.call("call.answer", call_id=ringing["call_id"])
        await w.call_state(ringing["call_id"], "connected")
        ended = await w.call_state(ringing["call_id"], "ended")
        res = await uac.wait(15)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (1, 0)
    assert ended["cause"] == "remote-hangup"
    session = await alice.call("session.get", session_id=ringing["session_id"])
    assert session["calls"][0]["direction"] == "inbound"


async def test_inbound_call_unanswered_times_out(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"calls.ring_timeout_s": 1.5})
    alice = await connect(gw)
    w = await watch(alice)
    cfg = gw.config.sip
    async with sipp_uac(f"{cfg.host}:{cfg.port}") as uac:
        ringing = await w.call_state(None, "ringing")
        ended = await w.call_state(ringing["call_id"], "ended", timeout=10)
        res = await uac.wait(15)
    assert ended["cause"] == "no-answer" and ended["sip_code"] == 480
    assert res.returncode == 1 and res.failed == 1  # the caller got 480 instead of 200
    assert "SIP/2.0 480" in res.messages


async def test_inbound_call_rejected_busy(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    cfg = gw.config.sip
    async with sipp_uac(f"{cfg.host}:{cfg.port}") as uac:
        ringing = await w.call_state(None, "ringing")
        await alice.call("call.reject", call_id=ringing["call_id"], code=486)
        ended = await w.call_state(ringing["call_id"], "ended")
        res = await uac.wait(15)
    assert ended["cause"] == "rejected"
    assert res.returncode == 1 and res.failed == 1  # the caller got 486 instead of 200
    assert "SIP/2.0 486" in res.messages


async def test_invalid_target_starts_nothing(start_gateway, connect) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    before = await alice.call("session.list")
    for target, reason in (("http://example.invalid/x", "invalid-uri"), ("no-such-desk", "no-such-endpoint"),
                           ("group:dispatch", "invalid-uri")):
        with pytest.raises(RemoteError) as err:
            await alice.call("call.dial", target=target)
        assert err.value.reason == reason, target
    assert await alice.call("session.list") == before
    assert await gw.store.list_calls() == []


async def test_worker_killed_mid_call(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.proxy": "none"})
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_uas("answer", calls=2) as uas:
        call = await alice.call("call.dial", target=uas.uri)
        await w.call_state(call["call_id"], "connected")
        gw.sip.kill_worker(gw.sip.worker_of(call["call_id"]))
        ended = await w.call_state(call["call_id"], "ended")
        assert ended["cause"] == "worker-crashed"
        # The control channel kept working and the next call succeeds on the restarted worker.
        sessions = await alice.call("session.list")
        assert sessions["sessions"]
        again = await alice.call("call.dial", target=uas.uri)
        await w.call_state(again["call_id"], "connected", timeout=20)
        await alice.call("call.hangup", call_id=again["call_id"])
        await w.call_state(again["call_id"], "ended")
    cdr = await gw.store.get_call(call["call_id"])
    assert cdr["cause"] == "worker-crashed"
