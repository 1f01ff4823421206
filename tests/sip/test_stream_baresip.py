"""Streams: one audio stream fanned out inside the workers (conference bridge) to real baresip
phones, written by the gateway once per worker and frame (SipSupervisor.attach_stream/send_stream)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import numpy as np
import pytest

from sip import SipSupervisor, ipc
from sip.errors import NoSuchCall
from tests.audio import active_span, dominant_frequency, frames, tone
from tests.peers.baresip import BaresipPhone

from .conftest import Recorder

pytestmark = pytest.mark.peers


async def _pace(sup: SipSupervisor, sid: str, pcm: bytes, on_frame=None) -> None:  # noqa: ANN001
    """send_stream at real time, a few frames ahead of the workers' clocks."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, f in enumerate(frames(pcm)):
        if on_frame is not None:
            await on_frame(i)
        sup.send_stream(sid, f)
        delay = start + (i - 3) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def _dial_all(sup: SipSupervisor, recorder: Recorder, phones: list[BaresipPhone]) -> list[str]:
    calls = [uuid.uuid4().hex for _ in phones]
    for c, p in zip(calls, phones):
        await sup.dial(c, p.uri, media_dir="sendrecv")
    for c in calls:
        await recorder.wait_state(c, "confirmed")
    for p in phones:
        await p.wait_log("incoming rtp for 'audio' established")
    await asyncio.sleep(0.3)  # let media settle (pjsua may re-INVITE to lock the codec)
    return calls


async def test_one_stream_to_three_phones_across_two_workers(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(calls_per_worker=2, max_workers=3, warm_workers=1)
    async with contextlib.AsyncExitStack() as stack:
        phones = [await stack.enter_async_context(BaresipPhone(user=f"spk{i}")) for i in range(3)]
        calls = await _dial_all(sup, recorder, phones)
        workers = [sup.worker_of(c) for c in calls]
        assert workers[0] == workers[1] != workers[2], workers  # fill-first: 2 + 1
        sid = uuid.uuid4().hex
        for c in calls:
            await sup.attach_stream(sid, c)
        assert sup.stream_workers(sid) == {workers[0]: 2, workers[2]: 1}

        written: list[int] = []
        real_write = {}
        for idx in set(workers):  # count what goes down each worker's pipe
            w = sup._workers[idx]
            real_write[idx] = w.proc.stdin.write

            def counting(data: bytes, _idx: int = idx) -> None:
                if data[4] != ipc.TYPE_CONTROL:  # commands and liveness pings are not audio
                    written.append(_idx)
                real_write[_idx](data)

            w.proc.stdin.write = counting  # type: ignore[method-assign]

        async def detach_midway(i: int) -> None:
            if i == 75:  # 1.5 s in: phone 1 shares its worker's port with phone 0
                await sup.detach_stream(sid, calls[1])
                assert sup.stream_workers(sid) == {workers[0]: 1, workers[2]: 1}

        await _pace(sup, sid, tone(1000, 3.0), detach_midway)
        for idx, fn in real_write.items():
            sup._workers[idx].proc.stdin.write = fn  # type: ignore[method-assign]
        # one message per worker and frame, whatever the number of calls
        assert written.count(workers[0]) == 150 and written.count(workers[2]) == 150
        await asyncio.sleep(0.3)
        await sup.close_stream(sid)
        assert sup.stream_workers(sid) == {}
        sup.send_stream(sid, bytes(640))  # closed: a no-op
        for c in calls:
            await sup.hangup(c)
        for c in calls:
            await recorder.wait_state(c, "disconnected")
        for p in phones:
            await p.wait_log("terminated")
        heard = []
        for p in phones:
            samples, rate = await p.recording("dec")
            span = active_span(samples, rate)
            heard.append((len(span) / rate, dominant_frequency(span, rate) if len(span) else 0.0))
    for secs, hz in heard:
        assert abs(hz - 1000) < 20, heard
    assert heard[0][0] > 2.5 and heard[2][0] > 2.5, heard  # the whole tone
    assert 1.0 < heard[1][0] < 2.0, heard  # until its detach, nothing after


async def test_stream_detached_when_call_ends_and_unknown_calls(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(calls_per_worker=2, max_workers=2, warm_workers=1)
    sid = uuid.uuid4().hex
    with pytest.raises(NoSuchCall):
        await sup.attach_stream(sid, uuid.uuid4().hex)
    async with BaresipPhone(user="a") as pa, BaresipPhone(user="b") as pb:
        ca, cb = await _dial_all(sup, recorder, [pa, pb])
        w = sup.worker_of(ca)
        assert sup.worker_of(cb) == w
        await sup.attach_stream(sid, ca)
        await sup.attach_stream(sid, ca)  # twice: still one attachment
        await sup.attach_stream(sid, cb)
        assert sup.stream_workers(sid) == {w: 2}
        # b hangs up mid-stream: the worker detaches it (its media is gone), a keeps hearing
        async def b_leaves(i: int) -> None:
            if i == 50:
                await sup.hangup(cb)
                await recorder.wait_state(cb, "disconnected")
                assert sup.stream_workers(sid) == {w: 1}

        await _pace(sup, sid, tone(1000, 2.5), b_leaves)
        await asyncio.sleep(0.3)
        await sup.hangup(ca)
        await recorder.wait_state(ca, "disconnected")
        assert sup.stream_workers(sid) == {}
        await sup.close_stream(sid)  # nothing attached any more: still fine
        await sup.detach_stream(sid, ca)  # the call is gone: a no-op
        await pa.wait_log("terminated")
        await pb.wait_log("terminated")
        a_samples, a_rate = await pa.recording("dec")
        b_samples, b_rate = await pb.recording("dec")
    a = active_span(a_samples, a_rate)
    b = active_span(b_samples, b_rate)
    assert len(a) / a_rate > 2.0 and abs(dominant_frequency(a, a_rate) - 1000) < 20
    assert len(b) / b_rate < 1.5  # only until it hung up
    # the worker is still healthy after ports came and went
    assert (await sup._command(sup._workers[w], {"cmd": "ping"}))["calls"] == 0


async def test_a_call_dialled_with_a_stream_gets_it_on_answer_and_a_port_only_when_listened_to(
        start_supervisor, recorder: Recorder) -> None:
    """dial(stream=...): the worker attaches the stream at CONFIRMED (the event names it) and gives
    the call no port of its own; listen() then bridges one, and what the far end echoes of the
    stream comes back to the gateway."""
    from tests.peers.sipp import UAS_SCENARIOS, Sipp

    sup = await start_supervisor()
    sid, call = uuid.uuid4().hex, uuid.uuid4().hex
    async with Sipp(UAS_SCENARIOS["answer"], extra_args=["-rtp_echo"]) as uas:
        await sup.dial(call, uas.uri, media_dir="sendrecv", stream=sid)
        confirmed = await recorder.wait_state(call, "confirmed")
        assert confirmed.extra.get("streams") == [sid]
        assert sup.stream_workers(sid) == {sup.worker_of(call): 1}
        await sup.listen(call, True)
        pace = asyncio.create_task(_pace(sup, sid, tone(900, 3.0)))
        try:
            async with asyncio.timeout(10):
                while len(recorder.audio.get(call, [])) < 50:  # one second of echo
                    await asyncio.sleep(0.05)
        finally:
            pace.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pace
        await sup.hangup(call)
        await recorder.wait_state(call, "disconnected")
    echoed = np.frombuffer(b"".join(recorder.audio[call]), dtype="<i2").astype(np.float64) / 32768
    assert abs(dominant_frequency(active_span(echoed, 16000), 16000) - 900) < 20
