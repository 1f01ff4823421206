"""Conferences against real phones: three baresip phones, each playing its own tone and recording
what it hears, mixed by the conference bridge of the worker holding their calls."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np
import pytest

from gateway.client import RemoteError
from sip.worker.pjsua2_choice import ENV
from tests.audio import frames, pcm_to_array, read_wav, tone
from tests.peers.baresip import BaresipPhone, write_wav

pytestmark = pytest.mark.peers

# No sum, difference or 2a-b of two of them lands near the third: a mix that clips a little
# cannot make a phone's own tone out of the others'.
TONES = {"duty": 440.0, "fire": 1000.0, "scene": 1700.0}
PRESENT, ABSENT = 0.04, 0.012  # a tone's amplitude (full scale 1.0) in a 100 ms block
AUDIO_S = 2.0  # how long the mix is let run in each phase (audio, not a wait for an event)


def tone_phone(name: str, tmp_path) -> BaresipPhone:
    """A phone playing its tone at 0.3 of full scale (two mixed stay clear of clipping)."""
    wav = write_wav(tmp_path / f"{name}.wav", tone(TONES[name], 30.0, rate=8000, amplitude=0.3), 8000)
    return BaresipPhone(user=name, play_wav=wav)


def tone_levels(samples: np.ndarray, rate: int, freqs: list[float]) -> np.ndarray:
    """Per 100 ms block, the amplitude of each frequency: shape (blocks, len(freqs))."""
    block = rate // 10
    n = len(samples) // block
    blocks = samples[: n * block].reshape(n, block) * np.hanning(block)
    spectrum = np.abs(np.fft.rfft(blocks, axis=1)) * 2 / np.hanning(block).sum()
    bins = [round(f * block / rate) for f in freqs]
    return np.stack([spectrum[:, max(b - 1, 0):b + 2].max(axis=1) for b in bins], axis=1)


async def heard(phone: BaresipPhone) -> dict[str, np.ndarray]:
    samples, rate = await phone.recording()
    levels = tone_levels(samples, rate, list(TONES.values()))
    return {name: levels[:, i] for i, name in enumerate(TONES)}


def assert_recorded_all_three(gw, rec: dict) -> None:
    """The conference's WAV (the home worker's mix): every tone in it for at least 1 s."""
    samples, rate = read_wav(Path(gw.config.gateway.data_dir) / "conferences" / rec["file"])
    mix = tone_levels(samples, rate, list(TONES.values()))
    assert [(mix[:, i] > PRESENT).sum() >= 10 for i in range(3)] == [True] * 3, mix.max(axis=0)


@contextlib.asynccontextmanager
async def wheel_of_two(start_gateway, connect, watch, tmp_path, monkeypatch):
    """The wheel fallback, 3 calls per worker, 2 workers, and the three tone phones: (gateway,
    client, its event watch, phones by name)."""
    monkeypatch.setenv(ENV, "wheel")  # worker processes inherit it
    gw = await start_gateway(**{"sip.calls_per_worker": 3, "sip.max_workers": 2})
    alice = await connect(gw)
    w = await watch(alice)
    async with (tone_phone("duty", tmp_path) as duty, tone_phone("fire", tmp_path) as fire,
                tone_phone("scene", tmp_path) as scene):
        yield gw, alice, w, {"duty": duty, "fire": fire, "scene": scene}


async def add_all(alice, w, cid: str, phones: dict[str, BaresipPhone]) -> dict[str, dict]:
    """Dial every phone into conference `cid` (in order) and wait until each has joined."""
    members = {name: await alice.call("conference.add", conference_id=cid, target=phone.uri)
               for name, phone in phones.items()}
    for m in members.values():
        await member_event(w, m["member_id"], "joined")
    return members


def member_event(w, member_id: str, state: str):
    return w.wait(lambda e: e["type"] == "conference.member" and e["data"]["member_id"] == member_id
                  and e["data"]["state"] == state, timeout=30)


async def test_three_phones_hear_each_other_not_themselves_mute_and_kick(start_gateway, connect, watch,
                                                                         tmp_path) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with (tone_phone("duty", tmp_path) as duty, tone_phone("fire", tmp_path) as fire,
                tone_phone("scene", tmp_path) as scene):
        phones = {"duty": duty, "fire": fire, "scene": scene}
        conf = await alice.call("conference.create", title="flood, north district", record=True)
        cid = conf["conference_id"]
        members = {}
        for name, phone in phones.items():
            members[name] = await alice.call("conference.add", conference_id=cid, target=phone.uri,
                                             chair=name == "duty")
            assert members[name]["state"] == "joining"
        for m in members.values():
            await member_event(w, m["member_id"], "joined")
        for m in members.values():  # each plays its tone: voice activity says it talks
            await w.wait(lambda e, m=m: e["type"] == "conference.member"
                         and e["data"]["member_id"] == m["member_id"] and e["data"]["talking"], timeout=15)
        await asyncio.sleep(AUDIO_S)  # every phone hears the two others
        muted = await alice.call("conference.mute", conference_id=cid, member_id=members["scene"]["member_id"])
        assert [m["state"] for m in muted["members"]] == ["joined", "joined", "muted"]
        await member_event(w, members["scene"]["member_id"], "muted")
        await asyncio.sleep(AUDIO_S)  # scene's tone is gone from the others' mix
        got = await alice.call("conference.get", conference_id=cid)
        assert got["session_id"] == conf["session_id"] and len(got["members"]) == 3
        left = await alice.call("conference.remove", conference_id=cid, member_id=members["scene"]["member_id"])
        assert left["state"] == "left" and left["cause"] == "removed"
        await w.call_state(members["scene"]["call_id"], "ended")
        await member_event(w, members["scene"]["member_id"], "left")
        ended = await alice.call("conference.end", conference_id=cid)
        assert ended["state"] == "ended"
        for name in ("duty", "fire"):
            await w.call_state(members[name]["call_id"], "ended")
        rec = (await w.wait(lambda e: e["type"] == "conference.recording"))["data"]
        levels = {name: await heard(phone) for name, phone in phones.items()}

    # One WAV of the mix: every member heard (scene until it was muted), written by the bridge.
    assert rec["conference_id"] == cid and rec["session_id"] == conf["session_id"] and rec["bytes"] > 44
    assert_recorded_all_three(gw, rec)

    for name, lv in levels.items():
        others = [o for o in TONES if o != name]
        assert lv[name].max() < ABSENT, f"{name} hears itself: {lv[name].max():.3f}"
        for other in others:
            if other == "scene":
                continue
            # heard through both phases (4 s): at least 2 s of blocks
            assert (lv[other] > PRESENT).sum() >= 20, f"{name} does not hear {other}"
    for name in ("duty", "fire"):
        lv = levels[name]
        assert (lv["scene"] > PRESENT).sum() >= 10, f"{name} never heard scene before the mute"
        # The tail, after the mute (the last 1 s before the hangup): the other tone, not scene's.
        other = "fire" if name == "duty" else "duty"
        active = np.nonzero(lv[other] > PRESENT)[0]
        tail = slice(active[-1] - 10, active[-1])
        assert lv["scene"][tail].max() < ABSENT, f"{name} still hears scene while it is muted"
    # scene heard the two others until its kick, muted or not (muted members still hear)
    assert (levels["scene"]["duty"] > PRESENT).sum() >= 20


async def test_a_1to1_call_escalated_keeps_its_audio_without_a_new_invite(start_gateway, connect, watch,
                                                                          tmp_path) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with tone_phone("duty", tmp_path) as duty, tone_phone("fire", tmp_path) as fire:
        call = await alice.call("call.dial", target=duty.uri)
        await w.call_state(call["call_id"], "connected")
        # pjsua locks the codec of a multi-codec answer with one re-INVITE: let it come first,
        # so any INVITE the phone gets from here on is the escalation's doing.
        await duty.wait_log("got re-INVITE", timeout=10)
        conf = await alice.call("conference.create", session_id=call["session_id"])
        moved = await alice.call("conference.add", conference_id=conf["conference_id"], call_id=call["call_id"],
                                 chair=True)
        assert moved["state"] == "joined" and moved["call_id"] == call["call_id"] and moved["chair"]
        with pytest.raises(RemoteError) as err:
            await alice.call("conference.add", conference_id=conf["conference_id"], call_id=call["call_id"])
        assert err.value.reason == "already-member"
        added = await alice.call("conference.add", conference_id=conf["conference_id"], target=fire.uri)
        await member_event(w, added["member_id"], "joined")
        await asyncio.sleep(AUDIO_S)
        muted = await alice.call("conference.mute", conference_id=conf["conference_id"], all_but_chair=True)
        assert [(m["chair"], m["state"]) for m in muted["members"]] == [(True, "joined"), (False, "muted")]
        await asyncio.sleep(AUDIO_S)  # the chair no longer hears fire; fire still hears the chair
        # The incident closes: its conference ends with it, every member's call is hung up.
        await alice.call("session.close", session_id=call["session_id"])
        for m in (moved, added):
            left = (await member_event(w, m["member_id"], "left"))["data"]
            assert left["cause"] == "session-closed"
            await w.call_state(m["call_id"], "ended")
        with pytest.raises(RemoteError) as err:
            await alice.call("conference.get", conference_id=conf["conference_id"])
        assert err.value.reason == "no-such-conference"
        duty_log = duty.log()
        lv_duty, lv_fire = await heard(duty), await heard(fire)
    assert w.states(call["call_id"]).count("dialing") == 1
    assert duty_log.count("answering call") == 1 and duty_log.count("got re-INVITE") == 1, duty_log[-1500:]
    assert len(duty.recordings()) == 1  # one call, one stream: the one dialled 1:1
    assert (lv_duty["fire"] > PRESENT).sum() >= 10 and lv_duty["duty"].max() < ABSENT
    assert (lv_fire["duty"] > PRESENT).sum() >= 30 and lv_fire["fire"].max() < ABSENT
    # the chair's tail (after "all but the chair" was muted): fire's tone is gone
    end = len(lv_duty["fire"]) - 2
    assert lv_duty["fire"][end - 10:end].max() < ABSENT, lv_duty["fire"][-14:]


async def test_a_conference_spanning_two_workers_on_the_wheel_passes_the_three_tone_test(
        start_gateway, connect, watch, tmp_path, monkeypatch) -> None:
    """The wheel fallback, 3 calls per worker: duty and fire on the home worker, which keeps its
    last slot for a trunk; scene on the second worker, linked to the home by one trunk. Each phone
    hears the two others once and not itself; the home's recording has all three."""
    async with wheel_of_two(start_gateway, connect, watch, tmp_path, monkeypatch) as (gw, alice, w, phones):
        conf = await alice.call("conference.create", record=True)
        cid = conf["conference_id"]
        members = await add_all(alice, w, cid, phones)
        workers = {name: gw.sip.worker_of(m["call_id"]) for name, m in members.items()}
        assert workers["duty"] == workers["fire"] != workers["scene"], workers
        for m in members.values():
            await w.wait(lambda e, m=m: e["type"] == "conference.member"
                         and e["data"]["member_id"] == m["member_id"] and e["data"]["talking"], timeout=15)
        await asyncio.sleep(AUDIO_S)  # every phone hears the two others, across the trunk
        # Both workers are full (their members and the trunk): a fourth member finds no room.
        with pytest.raises(RemoteError) as err:
            await alice.call("conference.add", conference_id=cid, target="sip:fourth@127.0.0.1:9")
        assert err.value.reason == "no-capacity" and err.value.details["conference_id"] == cid
        await alice.call("conference.end", conference_id=cid)
        for m in members.values():
            await w.call_state(m["call_id"], "ended")
        rec = (await w.wait(lambda e: e["type"] == "conference.recording"))["data"]
        levels = {name: await heard(phone) for name, phone in phones.items()}
    # the trunk's slots came back with the conference's end
    assert [v["calls"] for v in gw.sip.stats()["workers"].values()] == [0, 0]
    assert_recorded_all_three(gw, rec)
    for name, lv in levels.items():
        assert lv[name].max() < ABSENT, f"{name} hears itself: {lv[name].max():.3f}"
        others = [o for o in TONES if o != name]
        for other in others:
            assert (lv[other] > PRESENT).sum() >= 10, f"{name} does not hear {other}"
        # once: across the trunk as loud as from its own worker (twice would read about double)
        a, b = (np.median(lv[o][lv[o] > PRESENT]) for o in others)
        assert 0.6 < a / b < 1.6, f"{name} hears {others}: {a:.3f} {b:.3f}"


async def _console_audio(client, channel: int, frames_wanted: int) -> bytes:
    """What the console hears on its channel: `frames_wanted` frames of PCM16LE."""
    got: list[bytes] = []
    async with asyncio.timeout(30):
        async for f in client.audio():
            if f.channel == channel:
                got.append(f.payload)
                if len(got) >= frames_wanted:
                    break
    return b"".join(got)


async def test_console_audio_in_and_out_of_a_conference(start_gateway, connect, watch, tmp_path) -> None:
    """The console's own audio is a member: two phones hear its tone (scene's), it hears both
    phones and not itself; mute applies to it; its lost connection takes it out."""
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    console = await connect(gw)
    async with tone_phone("duty", tmp_path) as duty, tone_phone("fire", tmp_path) as fire:
        conf = await alice.call("conference.create", title="console joins")
        cid = conf["conference_id"]
        for phone in (duty, fire):
            m = await alice.call("conference.add", conference_id=cid, target=phone.uri)
            await member_event(w, m["member_id"], "joined")
        me = await console.call("conference.add", conference_id=cid, console=True, chair=True)
        assert me["state"] == "joined" and me["console"] and me["call_id"] is None and me["chair"]
        chan = me["media"]
        assert chan["rate"] == 16000 and chan["direction"] == "both" and chan["encoding"] == "pcm16le"
        listening = asyncio.create_task(_console_audio(console, chan["channel"], int(AUDIO_S * 2 / 0.02)))
        mine = frames(tone(TONES["scene"], AUDIO_S * 3, rate=16000, amplitude=0.3), rate=16000)
        sent = 0

        async def speak(n: int) -> None:  # n frames of the console's tone, paced like a microphone
            nonlocal sent
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, f in enumerate(mine[sent:sent + n]):
                await console.send_audio(chan["channel"], sent + i, (sent + i) * len(f) // 2, f)
                delay = start + (i - 3) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent += n

        await speak(int(AUDIO_S * 2 / 0.02))
        heard_by_console = await listening
        await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["member_id"] == me["member_id"]
                     and e["data"]["talking"])  # voice activity of the console's port
        muted = await alice.call("conference.mute", conference_id=cid, member_id=me["member_id"])
        assert [m["state"] for m in muted["members"] if m["console"]] == ["muted"]
        await speak(len(mine) - sent)  # 2 s more, muted: the phones do not hear it
        await console.close()  # the console's connection is lost: it leaves, the phones stay
        left = (await member_event(w, me["member_id"], "left"))["data"]
        assert left["cause"] == "disconnected" and left["console"]
        got = await alice.call("conference.get", conference_id=cid)
        assert [m["state"] for m in got["members"]] == ["joined", "joined", "left"]
        await alice.call("conference.end", conference_id=cid)
        levels = {"duty": await heard(duty), "fire": await heard(fire)}

    console_levels = tone_levels(pcm_to_array(heard_by_console), 16000, list(TONES.values()))
    lv = {name: console_levels[:, i] for i, name in enumerate(TONES)}
    assert lv["scene"].max() < ABSENT, f"the console hears itself: {lv['scene'].max():.3f}"
    for name in ("duty", "fire"):  # 4 s of the console's listening: at least 2 s of each phone
        assert (lv[name] > PRESENT).sum() >= 20, f"the console does not hear {name}: {lv[name].max():.3f}"
        # the console spoke 6 s, the last 2 s muted: at least 2 s heard, and not the muted part
        assert 20 <= (levels[name]["scene"] > PRESENT).sum() <= 45, f"{name}: {levels[name]['scene']}"
        assert levels[name][name].max() < ABSENT, f"{name} hears itself"


async def test_a_console_member_leaves_with_its_channel_or_its_worker(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    console = await connect(gw)
    cid = (await alice.call("conference.create"))["conference_id"]
    mine = await console.call("conference.add", conference_id=cid, console=True, rate=8000)
    assert mine["media"]["rate"] == 8000 and mine["media"]["samples_per_frame"] == 160
    theirs = await alice.call("conference.add", conference_id=cid, console=True, chair=True)
    await console.call("media.close", channel=mine["media"]["channel"])
    assert (await member_event(w, mine["member_id"], "left"))["data"]["cause"] == "channel-closed"
    with pytest.raises(RemoteError) as err:  # the channel is gone with the member
        await console.call("media.close", channel=mine["media"]["channel"])
    assert err.value.reason == "no-such-channel"
    # The worker holding the conference dies: the console member goes with it.
    gw.sip.kill_worker(gw.sip.worker_of("console-" + theirs["member_id"]))
    assert (await member_event(w, theirs["member_id"], "left"))["data"]["cause"] == "worker-crashed"
    with pytest.raises(RemoteError) as err:
        await alice.call("media.close", channel=theirs["media"]["channel"])
    assert err.value.reason == "no-such-channel"
    got = await alice.call("conference.get", conference_id=cid)
    assert [(m["console"], m["state"]) for m in got["members"]] == [(True, "left"), (True, "left")]


async def test_callers_dial_in_with_a_pin_and_hear_the_others(start_gateway, connect, watch, tmp_path) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    wav = write_wav(tmp_path / "scene.wav", tone(TONES["scene"], 30.0, rate=8000, amplitude=0.3), 8000)
    async with (tone_phone("duty", tmp_path) as duty, BaresipPhone(user="scene", play_wav=wav, console=True) as scene,
                BaresipPhone(user="stranger", console=True) as stranger):
        conf = await alice.call("conference.create", title="dial-in", dial_in={"pin": "2468"})
        cid, dial_in = conf["conference_id"], conf["dial_in"]
        assert dial_in["pin_required"] and dial_in["uri"].startswith("sip:" + dial_in["number"] + "@")
        chair = await alice.call("conference.add", conference_id=cid, target=duty.uri, chair=True)
        await member_event(w, chair["member_id"], "joined")
        scene.command("/dial " + dial_in["uri"])
        joining = (await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["state"] == "joining"
                                and e["data"]["member_id"] != chair["member_id"], timeout=30))["data"]
        assert joining["target"] and "scene" in joining["target"]
        call = await w.call_state(joining["call_id"], "connected")
        assert call["session_id"] == conf["session_id"] and call["direction"] == "inbound"
        scene.command("/sndcode 2468")
        await member_event(w, joining["member_id"], "joined")
        await asyncio.sleep(AUDIO_S)  # the two hear each other
        # A stranger with the wrong PIN, three times: hung up, never mixed.
        stranger.command("/dial " + dial_in["uri"])
        intruder = (await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["state"] == "joining"
                                 and e["data"]["member_id"] not in (chair["member_id"], joining["member_id"]),
                                 timeout=30))["data"]
        await w.call_state(intruder["call_id"], "connected")
        stranger.command("/sndcode 111122223333")
        left = (await member_event(w, intruder["member_id"], "left"))["data"]
        assert left["cause"] == "wrong-pin"
        await w.call_state(intruder["call_id"], "ended")
        await alice.call("conference.end", conference_id=cid)
        for m in (chair, joining):
            await w.call_state(m["call_id"], "ended")
        lv_duty, lv_scene, lv_stranger = await heard(duty), await heard(scene), await heard(stranger)
    assert not [e for e in w.events if e["type"] == "conference.member"
                and e["data"]["member_id"] == intruder["member_id"] and e["data"]["state"] == "joined"]
    assert (lv_duty["scene"] > PRESENT).sum() >= 10 and lv_duty["duty"].max() < ABSENT
    assert (lv_scene["duty"] > PRESENT).sum() >= 10 and lv_scene["scene"].max() < ABSENT
    assert lv_stranger["duty"].max() < ABSENT and lv_stranger["scene"].max() < ABSENT  # never in the mix


async def test_the_front_brings_every_dial_in_caller_to_the_conferences_worker(start_gateway, connect,
                                                                                  watch) -> None:
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.warm_workers": 2})
    alice = await connect(gw)
    w = await watch(alice)
    async with (BaresipPhone(user="duty") as duty, BaresipPhone(user="one", console=True) as one,
                BaresipPhone(user="two", console=True) as two):
        conf = await alice.call("conference.create", dial_in={})
        cid, uri = conf["conference_id"], conf["dial_in"]["uri"]
        assert not conf["dial_in"]["pin_required"]
        chair = await alice.call("conference.add", conference_id=cid, target=duty.uri, chair=True)
        await member_event(w, chair["member_id"], "joined")
        worker = gw.calls.worker_of(chair["call_id"])
        joined = []
        for phone in (one, two):  # round robin: one of the two reaches the other worker first
            phone.command("/dial " + uri)
            ev = await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["state"] == "joined"
                              and e["data"]["member_id"] not in [chair["member_id"], *joined], timeout=30)
            joined.append(ev["data"]["member_id"])
            assert gw.calls.worker_of(ev["data"]["call_id"]) == worker
        await alice.call("conference.end", conference_id=cid)
    elsewhere = [e["data"] for e in w.events if e["type"] == "call.state" and e["data"]["state"] == "ended"
                 and e["data"]["cause"] == "conference-elsewhere"]
    assert len(elsewhere) >= 1 and {e["session_id"] for e in elsewhere} == {conf["session_id"]}, elsewhere


async def test_a_dial_in_caller_who_never_types_the_pin_is_hung_up(start_gateway, connect, watch) -> None:
    """`calls.conference_pin_timeout_s`: a caller still without the right PIN that long after it
    was answered leaves with cause `pin-timeout` and its call is hung up; a caller who typed it in
    time stays."""
    gw = await start_gateway(**{"calls.conference_pin_timeout_s": 3})
    alice = await connect(gw)
    w = await watch(alice)
    async with (BaresipPhone(user="silent", console=True) as silent,
                BaresipPhone(user="scene", console=True) as scene):
        conf = await alice.call("conference.create", dial_in={"pin": "2468"})
        uri = conf["dial_in"]["uri"]
        members = {}
        for phone in (scene, silent):
            phone.command("/dial " + uri)
            ev = await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["state"] == "joining"
                              and e["data"]["member_id"] not in members, timeout=30)
            members[ev["data"]["member_id"]] = phone
            await w.call_state(ev["data"]["call_id"], "connected")
            if phone is scene:
                scene.command("/sndcode 2468")
        answered = asyncio.get_running_loop().time()  # silent's call is connected
        [typed_id, quiet_id] = members
        await member_event(w, typed_id, "joined")
        left = (await member_event(w, quiet_id, "left"))["data"]
        waited = asyncio.get_running_loop().time() - answered
        assert left["cause"] == "pin-timeout", left
        assert 2.0 < waited < 15, waited  # about 3 s after the answer (a loaded machine: later)
        await w.call_state(left["call_id"], "ended")
        got = await alice.call("conference.get", conference_id=conf["conference_id"])
        assert {m["member_id"]: m["state"] for m in got["members"]} == {quiet_id: "left", typed_id: "joined"}
        await alice.call("conference.end", conference_id=conf["conference_id"])


async def test_conference_list_shows_the_live_conferences_of_a_session(start_gateway, connect) -> None:
    """What a console shows after it signs in, whatever its event history holds: the conferences
    not ended, oldest first, each with its members; of one session when asked; readable by an
    observer."""
    gw = await start_gateway()
    alice = await connect(gw)
    olga = await connect(gw, "tok-observer")
    s1 = (await alice.call("session.create", title="pier"))["session_id"]
    s2 = (await alice.call("session.create", title="yard"))["session_id"]
    a = await alice.call("conference.create", session_id=s1, title="a")
    b = await alice.call("conference.create", session_id=s2, title="b")
    c = await alice.call("conference.create", session_id=s1, title="c")
    member = await alice.call("conference.add", conference_id=c["conference_id"], console=True)
    listed = (await olga.call("conference.list"))["conferences"]
    assert [x["title"] for x in listed] == ["a", "b", "c"]
    assert [m["member_id"] for m in listed[2]["members"]] == [member["member_id"]]
    assert listed[2] == await alice.call("conference.get", conference_id=c["conference_id"])
    assert [x["conference_id"] for x in (await alice.call("conference.list", session_id=s1))["conferences"]] == [
        a["conference_id"], c["conference_id"]]
    await alice.call("conference.end", conference_id=a["conference_id"])
    await alice.call("session.close", session_id=s2)  # ends b with its session
    assert [x["title"] for x in (await olga.call("conference.list"))["conferences"]] == ["c"]
    assert (await alice.call("conference.list", session_id="nope"))["conferences"] == []
    with pytest.raises(RemoteError) as err:
        await alice.call("conference.list", session_id="bad id!")
    assert err.value.reason == "invalid-params"
