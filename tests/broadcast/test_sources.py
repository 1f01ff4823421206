"""Broadcast sources: WAV decoding, chime, live console audio, real-time pacing."""

from __future__ import annotations

import asyncio
import statistics
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.broadcast.sources import (
    CHIME_NOTE_FRAMES,
    CHIME_NOTES_HZ,
    FRAME_BYTES,
    SILENCE,
    ChimeSource,
    LiveSource,
    PcmSource,
    Repeat,
    Sequence,
    Source,
    WavSource,
    pace,
)
from gateway.errors import InvalidParams
from tests.audio import dominant_frequency, pcm_to_array, rms, tone


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def stereo(left: bytes, right: bytes) -> bytes:
    l, r = np.frombuffer(left, "<i2"), np.frombuffer(right, "<i2")
    return np.column_stack([l, r]).astype("<i2").tobytes()


async def collect(source: Source) -> list[bytes]:
    return [f async for f in source.frames()]


@pytest.mark.parametrize(
    ("rate", "channels"), [(8000, 1), (16000, 1), (44100, 1), (44100, 2), (22050, 2), (48000, 3)])
async def test_wav_any_rate_and_channels_to_16k_mono(tmp_path, rate, channels):
    one = tone(1000, 2.0, rate)
    pcm = one if channels == 1 else (stereo(one, one) if channels == 2 else
                                      np.repeat(np.frombuffer(one, "<i2"), 3).tobytes())
    src = await WavSource.open(write_wav(tmp_path / "in.wav", pcm, rate, channels))
    assert src.duration_s == pytest.approx(2.0, abs=1e-3)
    frames = await collect(src)
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) == pytest.approx(100, abs=1)
    samples = pcm_to_array(b"".join(frames))
    assert dominant_frequency(samples[1600:-1600], 16000) == pytest.approx(1000, abs=5)
    assert rms(samples[1600:-1600]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert await collect(src) == frames  # replayable


async def test_wav_stereo_is_down_mixed(tmp_path):
    left, right = tone(600, 1.0, 44100, 0.4), tone(1500, 1.0, 44100, 0.4)
    src = await WavSource.open(write_wav(tmp_path / "st.wav", stereo(left, right), 44100, 2))
    samples = pcm_to_array(b"".join(await collect(src)))[800:-800]
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / 16000)
    at = lambda hz: spectrum[np.argmin(np.abs(freqs - hz))]  # noqa: E731
    assert at(600) == pytest.approx(at(1500), rel=0.1)  # both channels, equal weight
    assert at(600) > 100 * at(1000)


async def test_wav_last_frame_padded(tmp_path):
    src = await WavSource.open(write_wav(tmp_path / "s.wav", tone(440, 0.05), 16000))
    frames = await collect(src)
    assert len(frames) == 3 and frames[-1][320:] == bytes(320)


async def test_wav_lazy_open_validates_on_iteration(tmp_path):
    src = WavSource(tmp_path / "missing.wav")
    assert src.duration_s is None
    with pytest.raises(InvalidParams) as err:
        await collect(src)
    assert err.value.reason == "unreadable-file"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p / "nope.wav", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: _write(p / "t.wav", b"hello, this is text not audio\n" * 4), "not a WAV file"),
        (lambda p: _write(p / "e.wav", b""), "not a WAV file"),
        (lambda p: _write(p / "h.wav", b"RIFF\x10\x00\x00\x00WAVE"), "not a WAV file"),
        (lambda p: write_wav(p / "8.wav", bytes(800), 8000, width=1), "unsupported sample width: 8 bit"),
        (lambda p: write_wav(p / "24.wav", bytes(900), 8000, width=3), "unsupported sample width: 24 bit"),
        (lambda p: _write(p / "f.wav", _float_wav()), "unsupported WAV encoding"),
    ],
)
async def test_bad_files_give_precise_errors(tmp_path, make, why):
    path = make(tmp_path)
    with pytest.raises(InvalidParams) as err:
        await WavSource.open(path)
    assert err.value.reason == "unreadable-file"
    assert why in err.value.message and str(path) in err.value.message
    assert err.value.details["path"] == str(path)
    assert err.value.to_error()["data"]["reason"] == "unreadable-file"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _float_wav() -> bytes:
    import struct
    data = np.zeros(160, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


async def test_big_wav_is_read_off_the_loop(tmp_path, monkeypatch):
    """60 s of 44.1 kHz stereo: every open and read of the file runs in a worker thread."""
    one = tone(1000, 60.0, 44100, 0.3)
    path = write_wav(tmp_path / "big.wav", stereo(one, one), 44100, 2)
    loop_thread = threading.get_ident()
    calls: list[tuple[str, bool]] = []
    real_open, real_read = wave.open, wave.Wave_read.readframes

    def spy_open(*args, **kwargs):
        calls.append(("open", threading.get_ident() == loop_thread))
        return real_open(*args, **kwargs)

    def spy_read(self, n):
        calls.append(("read", threading.get_ident() == loop_thread))
        return real_read(self, n)

    monkeypatch.setattr(wave, "open", spy_open)
    monkeypatch.setattr(wave.Wave_read, "readframes", spy_read)
    src = await WavSource.open(path)
    n = 0
    async for _ in src.frames():
        n += 1
    assert n == 3000
    assert sum(1 for what, _ in calls if what == "read") >= 60  # in chunks, not one big read
    assert not [c for c in calls if c[1]], "file I/O on the event loop thread"


def test_pcm_source_frames_and_duration():
    src = PcmSource(tone(440, 0.5) + bytes(100))
    assert src.duration_s == pytest.approx(0.5 + 50 / 16000)
    frames = asyncio.run(collect(src))
    assert len(frames) == 26 and all(len(f) == FRAME_BYTES for f in frames)
    with pytest.raises(InvalidParams):
        PcmSource(b"\0\0\0")


async def test_chime_is_non_silent_and_has_its_notes():
    a, b = await collect(ChimeSource()), await collect(ChimeSource())
    assert a == b  # deterministic
    assert len(a) * 0.02 == pytest.approx(0.8)
    assert ChimeSource().duration_s == pytest.approx(0.8)
    samples = pcm_to_array(b"".join(a))
    assert 0.05 < rms(samples) and np.max(np.abs(samples)) < 0.5
    assert abs(samples[0]) < 0.01 and abs(samples[-1]) < 0.01  # faded in and out: no clicks
    note = CHIME_NOTE_FRAMES * 320
    for i, hz in enumerate(CHIME_NOTES_HZ):
        part = samples[i * note : (i + 1) * note]
        assert rms(part) > 0.05
        assert dominant_frequency(part, 16000) == pytest.approx(hz, abs=8)


async def test_sequence_is_chime_then_message():
    msg = PcmSource(tone(1000, 1.0))
    seq = Sequence([ChimeSource(), msg])
    assert seq.duration_s == pytest.approx(1.8)
    frames = await collect(seq)
    assert len(frames) == 90
    assert frames[:40] == await collect(ChimeSource())
    assert dominant_frequency(pcm_to_array(b"".join(frames[40:])), 16000) == pytest.approx(1000, abs=5)
    assert Sequence([ChimeSource(), LiveSource()]).duration_s is None


async def test_repeat_with_gaps():
    made = []

    def factory():
        made.append(1)
        return PcmSource(tone(1000, 0.2))

    rep = Repeat(factory, 3, 0.1)
    assert rep.duration_s == pytest.approx(3 * 0.2 + 2 * 0.1)
    frames = await collect(rep)
    assert len(frames) == 3 * 10 + 2 * 5 and len(made) == 3
    assert frames[10:15] == [SILENCE] * 5 and frames[25:30] == [SILENCE] * 5
    assert all(rms(pcm_to_array(f)) > 0.3 for f in frames[:10] + frames[15:25] + frames[30:])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidParams):
            Repeat(factory, bad, 0)
    with pytest.raises(InvalidParams):
        Repeat(factory, 2, -1)


async def test_repeat_of_an_opened_wav(tmp_path):
    wav = await WavSource.open(write_wav(tmp_path / "m.wav", tone(500, 0.4, 8000), 8000))
    rep = Repeat(lambda: wav, 2, 0.2)
    assert rep.duration_s == pytest.approx(1.0)
    assert len(await collect(rep)) == 50


async def test_live_source_resamples_8k():
    live = LiveSource()
    for frame in _chunks(tone(1000, 1.0, 8000), 320):  # 20 ms at 8 kHz
        live.push(frame, 8000)
    live.close()
    frames = await collect(live)
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) == pytest.approx(50, abs=1)
    samples = pcm_to_array(b"".join(frames))
    assert dominant_frequency(samples[800:-800], 16000) == pytest.approx(1000, abs=5)
    assert rms(samples[800:-800]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert live.stats["silence"] == 0 and live.stats["dropped"] == 0


async def test_live_source_16k_passthrough_and_bad_input():
    live = LiveSource()
    pcm = tone(700, 0.2)
    for frame in _chunks(pcm, FRAME_BYTES):
        live.push(frame, 16000)
    live.push(b"\0" * 5, 16000)
    live.push(b"\0" * 320, 11025)
    live.close()
    live.push(pcm, 16000)  # after close: ignored
    assert b"".join(await collect(live)) == pcm
    assert live.stats["bad"] == 2


async def test_live_source_yields_silence_when_starved():
    live = LiveSource()
    loop = asyncio.get_running_loop()
    out: list[tuple[float, bytes]] = []

    async def consume():
        async for f in live.frames():
            out.append((loop.time(), f))

    task = asyncio.create_task(consume())
    t0 = loop.time()
    await asyncio.sleep(0.2)  # starved: silence every 20 ms
    voice = tone(1000, 0.02)
    live.push(voice, 16000)
    await asyncio.sleep(0.1)
    live.close()
    await asyncio.wait_for(task, 1)
    before = [f for t, f in out if t < t0 + 0.19]
    assert 6 <= len(before) <= 11 and all(f == SILENCE for f in before)
    assert voice in [f for _, f in out]
    assert live.stats["silence"] >= 6


async def test_live_source_drops_oldest_when_full():
    live = LiveSource(queue_size=5)
    frames = [bytes([i]) * FRAME_BYTES for i in range(8)]
    for f in frames:
        live.push(f, 16000)
    live.close()
    assert await collect(live) == frames[3:]
    assert live.stats["dropped"] == 3


def _chunks(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


async def test_pace_real_time():
    loop = asyncio.get_running_loop()
    times = []
    t0 = loop.time()
    async for _ in pace(PcmSource(bytes(FRAME_BYTES * 50)).frames()):
        times.append(loop.time())
    total = times[-1] - t0
    # 49 intervals of 20 ms; a late wake-up on a loaded machine (once +54 ms in a CI run) delays the
    # frames after it but never shortens the schedule (test_pace_absolute_schedule_does_not_drift)
    assert 0.95 <= total <= 1.10, total
    spacing = np.diff(times)
    assert statistics.median(spacing) == pytest.approx(0.02, abs=0.003)


async def test_pace_absolute_schedule_does_not_drift():
    """A fake clock whose sleeps always overshoot by 5 ms: frame n still leaves at n * 20 ms."""
    now = [100.0]
    slept: list[float] = []

    async def sleep(d):
        slept.append(d)
        now[0] += d + 0.005

    sent = []
    async for _ in pace([SILENCE] * 100, clock=lambda: now[0], sleep=sleep):
        sent.append(now[0])
    assert sent[-1] - sent[0] == pytest.approx(99 * 0.02, abs=0.006)
    assert all(d == pytest.approx(0.015) for d in slept[1:])


async def test_pace_resyncs_after_a_stall():
    now = [0.0]

    async def sleep(d):
        now[0] += d

    async def frames():
        for i in range(10):
            if i == 5:
                now[0] += 2.0  # the loop stalled for 2 s
            yield SILENCE

    sent = []
    async for _ in pace(frames(), clock=lambda: now[0], sleep=sleep):
        sent.append(now[0])
    assert np.diff(sent[5:]).tolist() == pytest.approx([0.02] * 4)  # no burst of the backlog


async def test_a_tone_source_starts_at_once_however_long_and_plays_frame_by_frame(tmp_path):
    """broadcast.start with a long tone answered only after the whole tone was made in pure Python
    (~0.4 s for the broadcast benchmark's 100 s tone, on a thread holding the GIL): an hour's tone
    is made as it plays, a frame at a time, and sounds the same."""
    from gateway.broadcast.inputs import make_source

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    src, live = await make_source({"type": "tone", "frequency": 1000, "seconds": 3600}, 1, 0.0, False,
                                  media_dir=tmp_path, tts_engine="none")
    assert loop.time() - t0 < 1.0  # made up front: ~15 s of CPU
    assert live is None and src.duration_s == 3600
    it = src.frames()
    first = [await anext(it) for _ in range(100)]  # 2 s
    await it.aclose()
    pcm = b"".join(first)
    assert all(len(f) == FRAME_BYTES for f in first)
    x = pcm_to_array(pcm)
    assert abs(dominant_frequency(x, 16000) - 1000) < 5 and rms(x) > 0.3
    assert np.abs(x - pcm_to_array(tone(1000, 2.0, 16000, amplitude=0.5))).max() <= 1 / 32768  # a whole tone's samples

    short, _ = await make_source({"type": "tone", "frequency": 440, "seconds": 0.05}, 1, 0.0, False,
                                 media_dir=tmp_path, tts_engine="none")
    frames = await collect(short)
    assert len(frames) == 3 and frames[-1][320:] == bytes(320)  # 800 samples: 2.5 frames, padded
