"""The baresip peer reads a recording only once sndfile has closed it (stop 20's CI read one mid-close)."""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import pytest

from tests.audio import tone
from tests.peers.baresip import BaresipPhone, wav_closed


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def test_a_closed_wav_is_closed_and_a_recording_one_is_not(tmp_path) -> None:
    path = tmp_path / "dump-1-dec.wav"
    write_wav(path, tone(440, 0.5))
    assert wav_closed(path)
    whole = path.read_bytes()
    path.write_bytes(whole + b"\0" * 640)  # frames written after the header: its sizes are stale
    assert not wav_closed(path)
    for cut in (0, 8, 12, 20, 40):  # a header being written
        path.write_bytes(whole[:cut])
        assert not wav_closed(path), cut
    path.write_bytes(whole[:4] + (0xFFFFFFF8).to_bytes(4, "little") + whole[8:])  # sizes unknown at open
    assert not wav_closed(path)


async def test_recording_waits_until_the_dump_is_closed(tmp_path) -> None:
    phone = BaresipPhone(user="rec")
    shutil.rmtree(phone.dir)  # its own temp dir: this test writes the dumps in tmp_path
    phone.dir = tmp_path
    path = tmp_path / "dump-1-dec.wav"
    pcm = tone(440, 0.5)
    write_wav(path, pcm)
    path.write_bytes(path.read_bytes()[:36])  # open, half a header

    async def close_later() -> None:
        await asyncio.sleep(0.3)
        write_wav(path, pcm)

    closer = asyncio.create_task(close_later())
    samples, rate = await phone.recording(timeout=5)
    await closer
    assert rate == 16000 and len(samples) == len(pcm) // 2


async def test_recording_never_closed_fails_clearly(tmp_path) -> None:
    phone = BaresipPhone(user="rec")
    shutil.rmtree(phone.dir)  # its own temp dir: this test writes the dumps in tmp_path
    phone.dir = tmp_path
    phone.log_path = tmp_path / "baresip.log"
    phone.log_path.write_text("sndfile: dumping decode audio\n")
    (tmp_path / "dump-1-dec.wav").write_bytes(b"RIFF")
    with pytest.raises(AssertionError, match="not closed within 0.2 s"):
        await phone.recording(timeout=0.2)
