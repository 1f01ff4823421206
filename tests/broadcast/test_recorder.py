"""Recorder: one 16 kHz mono PCM16 WAV per broadcast, written off the loop."""

from __future__ import annotations

import asyncio
import threading
import wave

import numpy as np
import pytest

from gateway.broadcast import recorder as recorder_mod
from gateway.broadcast.recorder import Recorder, Recording
from gateway.broadcast.sources import ChimeSource, PcmSource, Sequence
from tests.audio import dominant_frequency, pcm_to_array, read_wav, tone


async def test_round_trip(tmp_path):
    pcm = tone(1000, 3.3)
    rec = Recorder(tmp_path / "sub" / "b1.wav")
    async for frame in Sequence([ChimeSource(), PcmSource(pcm)]).frames():
        rec.write(frame)
    result = await rec.close()
    assert isinstance(result, Recording)
    path, duration = result
    assert path == tmp_path / "sub" / "b1.wav" and duration == pytest.approx(0.8 + 3.3)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == int(4.1 * 16000)
        raw = w.readframes(w.getnframes())
    chime = b"".join([f async for f in ChimeSource().frames()])
    assert raw == chime + pcm
    samples, rate = read_wav(path)
    assert rate == 16000
    np.testing.assert_array_equal(samples, pcm_to_array(chime + pcm))
    assert dominant_frequency(samples[12800:], rate) == pytest.approx(1000, abs=5)


async def test_header_sizes_after_many_frames(tmp_path):
    """10 minutes of frames (30,000 writes): the RIFF and data sizes are right at close."""
    rec = Recorder(tmp_path / "long.wav", max_pending_s=700)  # faster than real time: no drops
    frames = [bytes([i % 251, 0]) * 320 for i in range(30000)]
    for i, f in enumerate(frames):
        rec.write(f)
        if i % 50 == 0:
            await asyncio.sleep(0)
    path, duration = await rec.close()
    assert duration == pytest.approx(600.0)
    data = path.read_bytes()
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    assert data[36:40] == b"data" and int.from_bytes(data[40:44], "little") == 30000 * 640
    assert data[44:] == b"".join(frames)
    assert rec.dropped_frames == 0


async def test_empty_recording_is_a_valid_wav(tmp_path):
    async with Recorder(tmp_path / "empty.wav") as rec:
        pass
    assert await rec.close() == (tmp_path / "empty.wav", 0.0)
    with wave.open(str(tmp_path / "empty.wav"), "rb") as w:
        assert w.getnframes() == 0 and w.getframerate() == 16000


async def test_file_io_off_the_loop(tmp_path, monkeypatch):
    loop_thread = threading.get_ident()
    seen: list[bool] = []
    real = recorder_mod._WavFile.write

    def spy(self, pcm):
        seen.append(threading.get_ident() == loop_thread)
        return real(self, pcm)

    monkeypatch.setattr(recorder_mod._WavFile, "write", spy)
    rec = Recorder(tmp_path / "t.wav", chunk_s=0.2)
    for _ in range(100):  # 2 s of frames: several chunks
        rec.write(bytes(640))
        await asyncio.sleep(0)
    await rec.close()
    assert len(seen) >= 10 and not any(seen)


async def test_slow_disk_drops_instead_of_growing(tmp_path, monkeypatch):
    gate = threading.Event()
    real = recorder_mod._WavFile.write

    def stalled(self, pcm):
        gate.wait(5)
        return real(self, pcm)

    monkeypatch.setattr(recorder_mod._WavFile, "write", stalled)
    rec = Recorder(tmp_path / "s.wav", chunk_s=0.1, max_pending_s=1.0)
    for _ in range(100):  # 2 s while the disk does not answer
        rec.write(bytes(640))
        await asyncio.sleep(0)
    assert rec.dropped_frames == 50
    gate.set()
    path, duration = await rec.close()
    assert duration == pytest.approx(1.0)
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 16000


async def test_write_error_is_reported_not_raised(tmp_path):
    (tmp_path / "ro").write_text("a file, not a directory")
    rec = Recorder(tmp_path / "ro" / "x.wav", chunk_s=0.02)
    for _ in range(5):
        rec.write(bytes(640))
        await asyncio.sleep(0.01)
    path, duration = await rec.close()
    assert rec.error is not None and duration == 0.0


async def test_misuse(tmp_path):
    rec = Recorder(tmp_path / "m.wav")
    with pytest.raises(ValueError):
        rec.write(b"\0")
    await rec.close()
    with pytest.raises(RuntimeError):
        rec.write(bytes(640))
