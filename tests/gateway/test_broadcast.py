"""Broadcasts through the whole gateway to real baresip speakers that record what they hear."""

from __future__ import annotations

import asyncio
import contextlib
import wave

import numpy as np
import pytest

from gateway.client import RemoteError
from tests.audio import active_span, dominant_frequency, frames, read_wav, rms, tone
from tests.peers.baresip import BaresipPhone
from tests.peers.sipp import sipp_uas

pytestmark = pytest.mark.peers

# baresip 1.0 (Debian's) records nothing for a stream it answered recvonly, so the tests that judge
# what a baresip speaker heard page it sendrecv; the one-way offer itself (the default, sendonly)
# is checked on the wire with SIPp in test_auto_answer_hints_follow_each_speakers_profile.
HEARD = {"broadcast.paging_direction": "sendrecv"}


def _endpoints(phones, group="district-3", profile=None) -> str:
    items = []
    for p in phones:
        prof = f', profile = "{profile}"' if profile else ""
        items.append(f'{{name = "{p.user}", uri = "{p.uri}", kind = "speaker", groups = ["{group}"]{prof}}}')
    return "[" + ", ".join(items) + "]"


@contextlib.asynccontextmanager
async def speakers(*names: str):
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(BaresipPhone(user=n)) for n in names]


def _target_states(w, broadcast_id: str, target: str) -> list[str]:
    return [e["data"]["state"] for e in w.events
            if e["type"] == "broadcast.target" and e["data"]["broadcast_id"] == broadcast_id
            and e["data"]["target"] == target]


async def _ended(w, broadcast_id: str, timeout: float = 30) -> dict:
    ev = await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["broadcast_id"] == broadcast_id
                      and e["data"]["state"] == "ended", timeout)
    return ev["data"]


async def test_tone_to_a_group_of_speakers_is_heard_by_each(start_gateway, connect, watch) -> None:
    async with speakers("spk-a", "spk-b", "spk-c") as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk, profile="rfc5373")})
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["group:district-3"], priority="normal",
                             source={"type": "tone", "frequency": 1000, "seconds": 2}, chime=False)
        assert b["state"] == "starting" and b["targets"] == {"pending": 3}
        end = await _ended(w, b["broadcast_id"])
        for p in spk:
            await p.wait_log("terminated")
    assert end["end_reason"] == "completed" and end["targets"] == {"ended": 3}
    for p in spk:
        assert _target_states(w, b["broadcast_id"], p.user) == ["ringing", "connected", "ended"]
        samples, rate = await p.recording("dec")
        heard = active_span(samples, rate)
        assert len(heard) / rate > 1.5, f"{p.user}: only {len(heard) / rate:.2f}s heard"
        assert abs(dominant_frequency(heard, rate) - 1000) < 20, p.user
        # The tone starts within a second of the speaker answering (the benchmark: all of 50
        # speakers connected in 2.7 s, 115 ms microphone to speaker).
        loud = np.nonzero(np.abs(samples) > 0.05)[0]
        assert loud.size and loud[0] / rate < 1.0, f"{p.user}: tone began {loud[0] / rate:.2f}s in"
    # The recording for the audit trail holds what was broadcast.
    rec, rate = read_wav(end["recording"])
    assert abs(len(rec) / rate - 2.0) < 0.1 and abs(dominant_frequency(rec, rate) - 1000) < 5
    row = await gw.store.get_broadcast(b["broadcast_id"])
    assert row["state"] == "ended" and row["recording"] == end["recording"]


async def test_file_source_correlates_with_what_the_speaker_recorded(start_gateway, connect, watch,
                                                                     tmp_path) -> None:
    async with speakers("spk-f") as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk)})
        media = tmp_path / "data" / "media"
        media.mkdir(parents=True)
        rng = np.random.default_rng(7)  # a melody of random notes: correlation finds its alignment
        notes = np.concatenate([np.frombuffer(tone(f, 0.25, rate=16000), dtype="<i2")
                                for f in rng.uniform(300, 1800, 12)])
        with wave.open(str(media / "evacuate.wav"), "wb") as wf:
            wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(16000)
            wf.writeframes(notes.astype("<i2").tobytes())
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["spk-f"], chime=False,
                             source={"type": "file", "path": "evacuate.wav"})
        await _ended(w, b["broadcast_id"])
        await spk[0].wait_log("terminated")
        heard, rate = await spk[0].recording("dec")
    ref = notes.astype(np.float64) / 32768
    if rate != 16000:  # baresip records at the codec's rate
        ref = ref[:: 16000 // rate]
    heard = active_span(heard, rate, threshold=0.01)
    # Each quarter of the file, found again in the recording: normalized cross-correlation at its
    # best lag (robust to the jitter buffer shifting later parts a little).
    scores = [_best_ncc(heard, chunk) for chunk in np.array_split(ref, 4)]
    # A loaded machine may lose a packet or two in one quarter; the content must still be there.
    assert sorted(scores)[1] > 0.9 and min(scores) > 0.5, f"normalized correlation per quarter: {scores}"


def _best_ncc(signal: np.ndarray, ref: np.ndarray) -> float:
    corr = np.correlate(signal, ref, mode="valid")
    energy = np.convolve(signal**2, np.ones(len(ref)), mode="valid")
    ncc = corr / (np.sqrt(energy) * np.linalg.norm(ref) + 1e-9)
    return float(np.max(np.abs(ncc)))


async def test_tts_announcement_in_mandarin_is_speech(start_gateway, connect, watch) -> None:
    async with speakers("spk-t") as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk)})
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["spk-t"], priority="emergency",
                             source={"type": "tts", "text": "请所有人员立即撤离", "language": "zh"})
        end = await _ended(w, b["broadcast_id"])
        await spk[0].wait_log("terminated")
        heard, rate = await spk[0].recording("dec")
    speech = active_span(heard, rate)
    assert len(speech) / rate > 1.0 and rms(speech) > 0.02
    assert end["source"] == {"type": "tts", "language": "zh", "text_chars": 9}


async def test_emergency_preempts_routine_and_routine_resumes(start_gateway, connect, watch) -> None:
    async with speakers("spk-1", "spk-2") as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk)})
        alice = await connect(gw)
        bob = await connect(gw, "tok-dispatcher-2")
        w = await watch(alice)
        routine = await alice.call("broadcast.start", targets=["spk-1", "spk-2"], priority="routine",
                                   chime=False, source={"type": "tone", "frequency": 500, "seconds": 8})
        rid = routine["broadcast_id"]
        await w.wait(lambda e: _target_states(w, rid, "spk-1")[-1:] == ["connected"]
                     and _target_states(w, rid, "spk-2")[-1:] == ["connected"])
        emergency = await bob.call("broadcast.start", targets=["spk-1"], priority="emergency",
                                   chime=False, source={"type": "tone", "frequency": 1000, "seconds": 2})
        eid = emergency["broadcast_id"]
        await _ended(w, eid)
        await w.wait(lambda e: _target_states(w, rid, "spk-1")[-2:] == ["ringing", "connected"]
                     and "resumed" in _target_states(w, rid, "spk-1"), timeout=20)
        await alice.call("broadcast.stop", broadcast_id=rid)
        await _ended(w, rid)
    s1 = _target_states(w, rid, "spk-1")
    assert s1[:3] == ["ringing", "connected", "pre-empted"] and "resumed" in s1 and s1[-1] == "ended"
    assert "pre-empted" not in _target_states(w, rid, "spk-2")
    assert _target_states(w, eid, "spk-1")[:2] == ["ringing", "connected"]
    # Order: spk-1 was taken from the routine broadcast before the emergency one dialled it.
    seq = {(e["data"]["broadcast_id"], e["data"]["state"]): e["seq"] for e in w.events
           if e["type"] == "broadcast.target" and e["data"]["target"] == "spk-1"}
    assert seq[(rid, "pre-empted")] < seq[(eid, "ringing")]


async def test_equal_priority_overlap_is_refused_not_shared(start_gateway, connect, watch) -> None:
    async with speakers("spk-x") as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk)})
        alice = await connect(gw)
        bob = await connect(gw, "tok-dispatcher-2")
        w = await watch(alice)
        first = await alice.call("broadcast.start", targets=["spk-x"], chime=False,
                                 source={"type": "tone", "seconds": 3})
        second = await bob.call("broadcast.start", targets=["spk-x"], chime=False,
                                source={"type": "tone", "seconds": 3})
        end2 = await _ended(w, second["broadcast_id"])
        await _ended(w, first["broadcast_id"])
    assert _target_states(w, second["broadcast_id"], "spk-x") == ["busy"]
    assert end2["end_reason"] == "all-failed"
    busy = next(e for e in w.events if e["type"] == "broadcast.target"
                and e["data"]["broadcast_id"] == second["broadcast_id"])
    assert busy["data"]["holder"] == first["broadcast_id"]


async def test_busy_and_unreachable_speakers_are_retried_the_rest_plays(start_gateway, connect, watch) -> None:
    async with speakers("spk-ok") as spk, sipp_uas("busy", calls=2) as busy:
        dead = "sip:gone@127.0.0.1:9"  # nothing listens there
        eps = _endpoints(spk)[:-1] + f', {{name = "spk-busy", uri = "{busy.uri}", kind = "speaker"}}' \
            f', {{name = "spk-dead", uri = "{dead}", kind = "speaker"}}]'
        gw = await start_gateway(**HEARD, **{"directory.endpoint": eps, "broadcast.retries": 1,
                                    "broadcast.retry_delay_s": 0.5, "broadcast.answer_timeout_s": 1.5})
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["spk-ok", "spk-busy", "spk-dead"], chime=False,
                             source={"type": "tone", "frequency": 800, "seconds": 6})
        end = await _ended(w, b["broadcast_id"], timeout=60)
        await spk[0].wait_log("terminated")
        res = await busy.wait(10)
        heard, rate = await spk[0].recording("dec")
    assert _target_states(w, b["broadcast_id"], "spk-busy") == ["ringing", "retrying", "ringing", "failed"]
    failed = [e["data"] for e in w.events if e["type"] == "broadcast.target"
              and e["data"]["target"] == "spk-busy" and e["data"]["state"] == "failed"][0]
    assert failed["sip_code"] == 486 and failed["attempts"] == 2
    assert res.count("INVITE sip:") == 2
    assert _target_states(w, b["broadcast_id"], "spk-dead") == ["ringing", "retrying", "ringing", "failed"]
    assert _target_states(w, b["broadcast_id"], "spk-ok") == ["ringing", "connected", "ended"]
    assert abs(dominant_frequency(active_span(heard, rate), rate) - 800) < 20
    assert end["targets"] == {"ended": 1, "failed": 2}


async def test_live_microphone_to_speakers(start_gateway, connect, watch) -> None:
    async with speakers("spk-l") as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk)})
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["spk-l"], chime=False, source={"type": "live"})
        chan = await alice.call("media.open", broadcast_id=b["broadcast_id"], rate=8000)
        await w.wait(lambda e: _target_states(w, b["broadcast_id"], "spk-l")[-1:] == ["connected"])
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, f in enumerate(frames(tone(700, 2.0, rate=8000), rate=8000)):
            await alice.send_audio(chan["channel"], i, i * 160, f)
            delay = start + (i - 2) * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.3)
        await alice.call("broadcast.stop", broadcast_id=b["broadcast_id"])
        end = await _ended(w, b["broadcast_id"])
        await spk[0].wait_log("terminated")
        heard, rate = await spk[0].recording("dec")
    assert end["end_reason"] == "stopped"
    tone_part = active_span(heard, rate)
    assert len(tone_part) / rate > 1.5
    assert abs(dominant_frequency(tone_part, rate) - 700) < 20


async def test_bad_broadcasts_start_nothing(start_gateway, connect, tmp_path) -> None:
    gw = await start_gateway(**{"directory.endpoint":
                                '[{name = "spk", uri = "sip:spk@127.0.0.1:9", kind = "speaker"}]'})
    alice = await connect(gw)
    unit = await connect(gw, "tok-terminal")
    (tmp_path / "data" / "media").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "media" / "notwav.wav").write_text("hello")
    tone_src = {"type": "tone"}
    cases = [
        ({"targets": ["nobody"], "source": tone_src}, "no-such-endpoint"),
        ({"targets": [], "source": tone_src}, "invalid-params"),
        ({"targets": ["zone:nowhere"], "source": tone_src}, "no-such-zone"),
        ({"targets": ["spk"], "source": {"type": "file", "path": "missing.wav"}}, "unreadable-file"),
        ({"targets": ["spk"], "source": {"type": "file", "path": "notwav.wav"}}, "unreadable-file"),
        ({"targets": ["spk"], "source": {"type": "file", "path": "../../../etc/passwd"}}, "unreadable-file"),
        ({"targets": ["spk"], "source": {"type": "tts", "text": "  "}}, "empty-text"),
        ({"targets": ["spk"], "source": {"type": "tts", "text": "hi", "language": "xx"}},
         "unsupported-language"),
        ({"targets": ["spk"], "source": tone_src, "priority": "whenever"}, "invalid-params"),
        ({"targets": ["spk"], "source": {"type": "smoke-signal"}}, "invalid-params"),
    ]
    for params, reason in cases:
        with pytest.raises(RemoteError) as err:
            await alice.call("broadcast.start", **params)
        assert err.value.reason == reason, params
    with pytest.raises(RemoteError) as err:
        await unit.call("broadcast.start", targets=["spk"], source=tone_src)
    assert err.value.reason == "forbidden"
    with pytest.raises(RemoteError) as err:
        await alice.call("broadcast.stop", broadcast_id="nope")
    assert err.value.reason == "no-such-broadcast"
    assert await gw.store.list_broadcasts() == [] and await gw.store.list_sessions() == []


async def test_stop_of_an_ended_broadcast_is_refused(start_gateway, connect, watch) -> None:
    async with sipp_uas("answer") as spk:
        gw = await start_gateway(**{"directory.endpoint": f'[{{name = "s", uri = "{spk.uri}"}}]'})
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["s"], chime=False, source={"type": "tone", "seconds": 1})
        await _ended(w, b["broadcast_id"])
        with pytest.raises(RemoteError) as err:
            await alice.call("broadcast.stop", broadcast_id=b["broadcast_id"])
        assert err.value.reason == "invalid-state"
        got = await alice.call("broadcast.get", broadcast_id=b["broadcast_id"])
        assert got["state"] == "ended" and got["end_reason"] == "completed"


async def test_auto_answer_hints_follow_each_speakers_profile(start_gateway, connect, watch) -> None:
    async with sipp_uas("answer") as plain, sipp_uas("answer") as yealink, \
            sipp_uas("answer") as polycom, sipp_uas("answer") as custom:
        eps = ", ".join(
            f'{{name = "{n}", uri = "{u.uri}", kind = "speaker"{p}}}' for n, u, p in (
                ("plain", plain, ""), ("yl", yealink, ', profile = "yealink"'),
                ("pc", polycom, ', profile = "polycom"'), ("hall", custom, ', profile = "hall"')))
        gw = await start_gateway(**{
            "directory.endpoint": f"[{eps}]",
            "broadcast.profiles": '{hall = {headers = {"Answer-Mode" = "Auto", "X-Zone" = "hall"}}}',
        })
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["plain", "yl", "pc", "hall"], chime=False,
                             source={"type": "tone", "seconds": 1})
        await _ended(w, b["broadcast_id"])
        results = {n: await u.wait(10) for n, u in (("plain", plain), ("yl", yealink), ("pc", polycom),
                                                     ("hall", custom))}
    invites = {n: r.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0] for n, r in results.items()}
    assert all(r.successful == 1 for r in results.values())
    assert all("a=sendonly" in r.messages for r in results.values())  # paging is one-way audio
    assert "Answer-Mode" not in invites["plain"] and "Alert-Info" not in invites["plain"]
    assert f"Call-Info: <{yealink.uri}>;answer-after=0" in invites["yl"]
    assert "Alert-Info: Auto Answer" in invites["pc"]
    assert "Answer-Mode: Auto" in invites["hall"] and "X-Zone: hall" in invites["hall"]
