"""SipSupervisor against real SIPp peers: what SIPp saw decides (exit status, stats, trace)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import structlog.testing

from sip import NoCapacity, SipUnavailable, TargetError
from tests.peers.sipp import sipp_registrar, sipp_uac, sipp_uas

from .conftest import Recorder, dial_listening, probe_count, probed_calls_per_worker, pumping_audio

pytestmark = pytest.mark.peers


def cid() -> str:
    return uuid.uuid4().hex


async def test_probe_finds_call_limit(start_supervisor) -> None:
    sup = await start_supervisor(calls_per_worker=0)
    rtp = sup.config.max_calls_for_rtp  # the supervisor probes no further than its RTP ports carry
    assert sup.calls_per_worker == min(probe_count(rtp), rtp)
    assert sup.calls_per_worker >= 1
    assert sup.ready


async def test_dial_answered_then_hangup(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with sipp_uas("answer") as uas:
        c = cid()
        await sup.dial(c, uas.uri, display_name="Dispatch 1", headers={"X-Incident": "42"})
        ev = await recorder.wait_state(c, "confirmed")
        assert ev.sip_code == 200 and ev.worker == 0
        await sup.hangup(c)
        end = await recorder.wait_state(c, "disconnected")
        assert end.cause == "local-hangup"
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (1, 0)
    assert "X-Incident: 42" in res.messages
    assert '"Dispatch 1"' in res.messages
    assert res.count("BYE sip:") >= 1
    assert recorder.states(c)[:1] == ["calling"]


async def test_dial_busy(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with sipp_uas("busy") as uas:
        c = cid()
        await sup.dial(c, uas.uri)
        end = await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert (end.sip_code, end.cause) == (486, "busy")
    assert res.returncode == 0, res.errors
    assert res.successful == 1


async def test_dial_no_answer_times_out_with_cancel(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with sipp_uas("no-answer") as uas:
        c = cid()
        await sup.dial(c, uas.uri, timeout=1.5)
        await recorder.wait_state(c, "early")
        end = await recorder.wait_state(c, "disconnected", timeout=10)
        res = await uas.wait(10)
    assert end.cause == "no-answer"
    assert res.returncode == 0, res.errors
    assert res.successful == 1
    assert res.count("CANCEL sip:") >= 1


async def test_hangup_while_ringing_is_cancelled(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    async with sipp_uas("no-answer") as uas:
        c = cid()
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "early")
        await sup.hangup(c)
        end = await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert end.cause == "cancelled"
    assert res.returncode == 0 and res.count("CANCEL sip:") >= 1


async def test_inbound_call_answered(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(proxy="none", max_workers=1)
    host, port = sup.worker_addresses[0]
    assert (host, port) == (sup.config.host, sup.config.port)
    async with sipp_uac(f"{host}:{port}", hold_ms=800) as uac:
        inc = await recorder.wait_for(lambda e: e.kind == "incoming")
        assert inc.remote_uri and "sipp@" in inc.remote_uri
        assert len(inc.call_id) == 32
        await sup.answer(inc.call_id)
        await recorder.wait_state(inc.call_id, "confirmed")
        end = await recorder.wait_state(inc.call_id, "disconnected")
        res = await uac.wait(10)
    assert end.cause == "remote-hangup"
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (1, 0)
    assert "180 Ringing" in res.messages


async def test_inbound_call_rejected(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(proxy="none", max_workers=1)
    host, port = sup.worker_addresses[0]
    async with sipp_uac(f"{host}:{port}") as uac:
        inc = await recorder.wait_for(lambda e: e.kind == "incoming")
        await sup.reject(inc.call_id, 486)
        end = await recorder.wait_state(inc.call_id, "disconnected")
        res = await uac.wait(10)
    assert end.cause == "rejected"
    assert res.returncode == 1 and res.failed == 1  # the caller got 486 instead of 200
    assert "SIP/2.0 486" in res.messages


async def test_calls_spread_over_workers_until_no_capacity(start_supervisor, recorder: Recorder) -> None:
    per = probed_calls_per_worker()
    sup = await start_supervisor(max_workers=2, warm_workers=1)
    total = 2 * per
    async with sipp_uas("answer", calls=total) as uas:
        ids = [cid() for _ in range(total)]
        for c in ids:
            await sup.dial(c, uas.uri)
            await asyncio.sleep(0.05)  # pace the burst (SIPp and retransmissions)
        for c in ids:
            await recorder.wait_state(c, "confirmed", timeout=15)
        used = {sup.worker_of(c) for c in ids}
        assert used == {0, 1}
        with pytest.raises(NoCapacity) as err:
            await sup.dial(cid(), uas.uri)
        assert err.value.reason == "no-capacity"
        for c in ids:
            await sup.hangup(c)
        for c in ids:
            await recorder.wait_state(c, "disconnected")
        res = await uas.wait(15)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (total, 0)


async def test_worker_crash_ends_its_calls_only(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(max_workers=2, warm_workers=2, calls_per_worker=1)  # one call each
    async with sipp_uas("answer") as uas_a, sipp_uas("answer") as uas_b:
        a, b = cid(), cid()
        await sup.dial(a, uas_a.uri)
        await recorder.wait_state(a, "confirmed")
        await sup.dial(b, uas_b.uri)
        await recorder.wait_state(b, "confirmed")
        wa, wb = sup.worker_of(a), sup.worker_of(b)
        assert wa is not None and wb is not None and wa != wb
        old_pid = sup.worker_pid(wa)
        sup.kill_worker(wa)
        crashed = await recorder.wait_state(a, "disconnected")
        assert crashed.cause == "worker-crashed" and crashed.worker == wa
        # the other worker's call is untouched and ends normally
        await sup.hangup(b)
        assert (await recorder.wait_state(b, "disconnected")).cause == "local-hangup"
        res_b = await uas_b.wait(10)
        assert res_b.returncode == 0 and res_b.successful == 1
    # the crashed worker comes back, and new calls work
    async with asyncio.timeout(15):
        while sup.worker_pid(wa) in (None, old_pid):
            await asyncio.sleep(0.05)
    assert sup.ready
    async with sipp_uas("answer") as uas_c:
        c = cid()
        await sup.dial(c, uas_c.uri)
        await recorder.wait_state(c, "confirmed")
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res_c = await uas_c.wait(10)
    assert res_c.returncode == 0 and res_c.successful == 1


async def test_hold_unhold_transfer(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()

    def media(c: str, status: str):
        return lambda e: e.call_id == c and e.kind == "media" and e.extra.get("status") == status

    async with sipp_uas("features") as uas:
        c = cid()
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "confirmed")
        await recorder.wait_for(media(c, "active"))
        await sup.hold(c)
        await recorder.wait_for(media(c, "local-hold"))
        n = len(recorder.events)
        await sup.unhold(c)
        await recorder.wait_for(media(c, "active"), since=n)
        await sup.transfer(c, "sip:desk@127.0.0.1:5999")
        xfer = await recorder.wait_for(lambda e: e.call_id == c and e.kind == "transfer" and e.extra.get("final"))
        assert xfer.sip_code == 200
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    assert res.successful == 1
    assert "Refer-To: <sip:desk@127.0.0.1:5999>" in res.messages or "Refer-To: sip:desk@127.0.0.1:5999" in res.messages


async def test_registration_with_digest_auth(start_supervisor, recorder: Recorder) -> None:
    async with sipp_registrar("alice", "s3cret") as reg:
        sup = await start_supervisor(
            proxy="none", max_workers=1,
            registration={"registrar": f"sip:127.0.0.1:{reg.port}", "username": "alice",
                          "password": "s3cret", "realm": "*", "expires": 60},
        )
        async with asyncio.timeout(10):
            while not (sup.registration and sup.registration["code"] == 200):
                await asyncio.sleep(0.05)
        assert sup.registration["active"]
        await sup.stop()  # un-registers
        res = await reg.wait(10)
    assert res.returncode == 0, res.errors
    assert res.successful == 1
    assert 'username="alice"' in res.messages


async def test_inbound_dtmf_from_sipp(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(proxy="none", max_workers=1)
    host, port = sup.worker_addresses[0]
    async with sipp_uac(f"{host}:{port}", hold_ms=1500, play_pcap="dtmf_2833_9.pcap") as uac:
        inc = await recorder.wait_for(lambda e: e.kind == "incoming")
        await sup.answer(inc.call_id)
        dtmf = await recorder.wait_for(lambda e: e.call_id == inc.call_id and e.kind == "dtmf")
        assert dtmf.extra["digit"] == "9"
        await recorder.wait_state(inc.call_id, "disconnected")
        res = await uac.wait(10)
    assert res.returncode == 0, res.errors


async def test_stop_hangs_up_every_call(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(max_workers=2, warm_workers=2, calls_per_worker=1)  # one call each
    async with sipp_uas("answer", calls=2) as uas:
        ids = [cid(), cid()]
        for c in ids:
            await sup.dial(c, uas.uri)
            await recorder.wait_state(c, "confirmed")
        assert {sup.worker_of(c) for c in ids} == {0, 1}
        await sup.stop()
        assert not sup.ready
        for c in ids:
            assert (await recorder.wait_state(c, "disconnected")).cause == "local-hangup"
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (2, 0)


async def test_concurrent_burst_starts_only_needed_workers(start_supervisor, recorder: Recorder) -> None:
    per = probed_calls_per_worker()
    sup = await start_supervisor(max_workers=4, warm_workers=0)
    total = 2 * per + 1  # needs three workers
    async with sipp_uas("answer", calls=total) as uas:
        ids = [cid() for _ in range(total)]
        await asyncio.gather(*(sup.dial(c, uas.uri) for c in ids))
        for c in ids:
            await recorder.wait_state(c, "confirmed", timeout=15)
        placed = [sup.worker_of(c) for c in ids]
        assert set(placed) == {0, 1, 2}
        assert max(placed.count(i) for i in set(placed)) <= per
        for c in ids:
            await sup.hangup(c)
        for c in ids:
            await recorder.wait_state(c, "disconnected")
        res = await uas.wait(15)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (total, 0)


@pytest.mark.parametrize("uri", ["not a uri", "sip:", "tel:+4930123"])
async def test_dial_invalid_uri(start_supervisor, recorder: Recorder, uri: str) -> None:
    sup = await start_supervisor()
    with pytest.raises(TargetError) as err:
        await sup.dial(cid(), uri)
    assert err.value.reason == "invalid-uri"
    assert sup.worker_of("x") is None and sup.ready  # the worker survived


async def test_dial_unresolvable_host(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor()
    c = cid()
    with pytest.raises(TargetError) as err:
        await sup.dial(c, "sip:x@host.invalid")
    assert err.value.reason == "target-unreachable"
    end = await recorder.wait_state(c, "disconnected")
    assert end.cause == "unreachable"
    assert sup.worker_of(c) is None


async def test_logs_are_events_with_fields(start_supervisor) -> None:
    with structlog.testing.capture_logs() as logs:
        sup = await start_supervisor(calls_per_worker=0)
    probed = [e for e in logs if e["event"] == "sip.calls_per_worker.probed"]
    assert probed and probed[0]["calls_per_worker"] == sup.calls_per_worker
    (up,) = [e for e in logs if e["event"] == "sip.worker.up"]
    assert up["worker"] == 0 and up["pid"] == sup.worker_pid(0)
    assert tuple(up["address"]) == sup.config.worker_address(0)


async def test_dial_waits_for_a_restarting_worker(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(max_workers=1)
    old_pid = sup.worker_pid(0)
    async with sipp_uas("answer") as uas:
        with structlog.testing.capture_logs() as logs:
            sup.kill_worker(0)
            c = cid()
            await sup.dial(c, uas.uri)  # no other worker, no free slot: waits for worker 0
            assert sup.worker_pid(0) not in (None, old_pid)
            ev = await recorder.wait_state(c, "confirmed")
        assert ev.worker == 0 and ev.sip_code == 200
        await sup.hangup(c)
        assert (await recorder.wait_state(c, "disconnected")).cause == "local-hangup"
        res = await uas.wait(10)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (1, 0)
    assert "disconnected" not in recorder.states(c)[:-1]
    died = [e for e in logs if e["event"] == "sip.worker.died"]
    assert died and died[0]["worker"] == 0 and died[0]["restarting"] is True
    assert any(e["event"] == "sip.worker.up" and e["worker"] == 0 for e in logs)


async def test_dial_after_crash_detected_waits_for_restart(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(max_workers=1)
    old_pid = sup.worker_pid(0)
    sup.kill_worker(0)
    async with asyncio.timeout(5):
        while sup.ready:  # the supervisor has seen the crash; the restart is under way
            await asyncio.sleep(0.01)
    async with sipp_uas("answer") as uas:
        c = cid()
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "confirmed")
        assert sup.worker_pid(0) not in (None, old_pid)
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert res.returncode == 0 and res.successful == 1


async def test_dials_fill_one_worker_before_the_next(start_supervisor, recorder: Recorder) -> None:
    """Fill-first placement; an empty warm worker killed under it does not stop new calls."""
    per = probed_calls_per_worker()
    sup = await start_supervisor(max_workers=3, warm_workers=1)
    total = 2 * per + 1
    async with sipp_uas("answer", calls=total) as uas:
        ids = [cid() for _ in range(total)]
        for c in ids[: per + 1]:
            await sup.dial(c, uas.uri)
            await asyncio.sleep(0.05)
        assert [sup.worker_of(c) for c in ids[: per + 1]] == [0] * per + [1]
        # worker 1 took a call, so worker 2 is started as the idle warm one; kill it while empty
        async with asyncio.timeout(15):
            while sup.worker_pid(2) is None:
                await asyncio.sleep(0.05)
        sup.kill_worker(2)
        for c in ids[per + 1:]:
            await sup.dial(c, uas.uri)  # worker 1 fills up, then worker 2 (restarted) takes one
            await asyncio.sleep(0.05)
        placed = [sup.worker_of(c) for c in ids]
        assert placed == [0] * per + [1] * per + [2], placed
        for c in ids:
            await recorder.wait_state(c, "confirmed", timeout=15)
        for c in ids:
            await sup.hangup(c)
        for c in ids:
            await recorder.wait_state(c, "disconnected")
        res = await uas.wait(15)
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (total, 0)


async def test_dial_unavailable_on_one_worker_tries_another(start_supervisor, recorder: Recorder,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stays up but fails a dial with sip-unavailable costs one retry elsewhere;
    a second sip-unavailable is the caller's error."""
    sup = await start_supervisor(max_workers=2, warm_workers=2)
    async with asyncio.timeout(15):
        while sup.worker_pid(1) is None:
            await asyncio.sleep(0.05)
    real = sup._command
    broken = {0}

    async def command(w, cmd):  # worker 0 (the fill-first choice) refuses every dial
        if cmd.get("cmd") == "dial" and w.index in broken:
            raise SipUnavailable(f"worker {w.index} broken", reason="sip-unavailable")
        return await real(w, cmd)

    monkeypatch.setattr(sup, "_command", command)
    async with sipp_uas("answer") as uas:
        with structlog.testing.capture_logs() as logs:
            c = cid()
            await sup.dial(c, uas.uri)
        assert sup.worker_of(c) == 1
        await recorder.wait_state(c, "confirmed")
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert res.returncode == 0 and res.successful == 1
    assert [e["worker"] for e in logs if e["event"] == "sip.dial.worker_unavailable"] == [0]
    broken.add(1)
    with pytest.raises(SipUnavailable):
        await sup.dial(cid(), "sip:x@127.0.0.1:9")
    assert sup.worker_pid(0) and sup.worker_pid(1)  # both still up


async def test_mass_hangup_while_audio_flows(start_supervisor, recorder: Recorder) -> None:
    """Every call of two workers hung up at once while audio is pushed both ways (SIPp echoes
    RTP): no worker dies, every call ends as a local hangup, SIPp saw every BYE."""
    from tests.audio import frames, tone
    from tests.peers.sipp import UAS_SCENARIOS, Sipp

    per = probed_calls_per_worker()
    sup = await start_supervisor(max_workers=2, warm_workers=2)
    n = 2 * per
    fr = frames(tone(700, 1.0))
    async with Sipp(UAS_SCENARIOS["answer"], calls=n, extra_args=["-rtp_echo"]) as uas:
        ids = await dial_listening(sup, recorder, uas.uri, n)
        async with pumping_audio(sup, ids, fr):
            async with asyncio.timeout(10):
                while not all(len(recorder.audio.get(c, [])) >= 10 for c in ids):  # echo is flowing
                    await asyncio.sleep(0.05)
            await asyncio.gather(*(sup.hangup(c) for c in ids))
            await asyncio.sleep(0.3)  # frames keep coming for calls being torn down
        ends = [await recorder.wait_state(c, "disconnected") for c in ids]
        res = await uas.wait(15)
    assert {e.cause for e in ends} == {"local-hangup"}
    assert not [e for e in recorder.events if e.cause == "worker-crashed"]
    assert res.returncode == 0, res.errors
    assert (res.successful, res.failed) == (n, 0)
    assert sup.worker_pid(0) and sup.worker_pid(1)
