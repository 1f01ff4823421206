"""TTS with the real espeak-ng binary (a missing binary fails these tests: it is not a skip)."""

from __future__ import annotations

import asyncio
import os
import struct

import numpy as np
import pytest

from gateway.broadcast import tts
from gateway.broadcast.sources import FRAME_BYTES, PcmSource
from gateway.broadcast.tts import MAX_TEXT_CHARS, EspeakNg, TtsEngine, get_engine, wav_to_pcm16k
from gateway.errors import InvalidParams, Unavailable
from tests.audio import active_span, pcm_to_array, rms


@pytest.fixture
def espeak(require_binary) -> EspeakNg:
    return EspeakNg(require_binary("espeak-ng"), timeout_s=60)


def speech_band_ratio(samples: np.ndarray, rate: int = 16000) -> float:
    """Share of the energy between 100 Hz and 4 kHz."""
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(power[(freqs >= 100) & (freqs <= 4000)].sum() / power.sum())


@pytest.mark.parametrize(
    ("text", "language"),
    [("请所有人员撤离", "zh"), ("请所有人员撤离", "cmn"), ("Evacuate the building now", "en")])
async def test_speech_is_produced(espeak, text, language):
    pcm = await espeak.synthesize(text, language)
    assert len(pcm) % 2 == 0
    samples = pcm_to_array(pcm)
    speech = active_span(samples, 16000)
    assert len(speech) / 16000 >= 0.5
    assert rms(speech) > 0.03
    assert speech_band_ratio(speech) > 0.8
    frames = [f async for f in PcmSource(pcm).frames()]  # ready for broadcast
    assert all(len(f) == FRAME_BYTES for f in frames)


async def test_languages_sound_different(espeak):
    zh = await espeak.synthesize("请所有人员撤离", "zh")
    en = await espeak.synthesize("请所有人员撤离", "en")  # English voice: reads out no hanzi the same
    assert zh != en


async def test_text_is_not_an_option_or_a_shell_command(espeak, tmp_path):
    marker = tmp_path / "pwned"
    pcm = await espeak.synthesize(f"--version; touch {marker} $(touch {marker}) `touch {marker}`", "en")
    assert len(pcm) / 32000 > 1.0 and not marker.exists()


async def test_synthesis_does_not_block_the_loop(espeak, tmp_path):
    """An engine that takes 0.6 s: the loop keeps turning meanwhile (a blocking run gives 0 ticks)."""
    slow = tmp_path / "espeak-ng"
    slow.write_text(f"#!/bin/sh\nsleep 0.6\nexec {espeak.binary} \"$@\"\n")
    slow.chmod(0o755)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    results = await asyncio.gather(*(EspeakNg(str(slow)).synthesize("Evacuate the building now", "en")
                                     for _ in range(2)))
    task.cancel()
    assert results[0] == results[1] == await espeak.synthesize("Evacuate the building now", "en")
    assert ticks >= 10


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
async def test_empty_text(espeak, text):
    with pytest.raises(InvalidParams) as err:
        await espeak.synthesize(text, "en")
    assert err.value.reason == "empty-text"


async def test_too_long_text(espeak):
    with pytest.raises(InvalidParams) as err:
        await espeak.synthesize("a" * (MAX_TEXT_CHARS + 1), "en")
    assert err.value.reason == "text-too-long"
    assert err.value.details == {"length": MAX_TEXT_CHARS + 1, "max": MAX_TEXT_CHARS}


@pytest.mark.parametrize("language", ["fr", "yue", "", "EN-US", None])
async def test_unsupported_language(espeak, language):
    with pytest.raises(InvalidParams) as err:
        await espeak.synthesize("hello", language)
    assert err.value.reason == "unsupported-language"
    assert err.value.details["supported"] == ["cmn", "en", "zh"]


async def test_language_code_case_and_spaces(espeak):
    assert len(await espeak.synthesize("hello", " EN ")) > 0


async def test_missing_binary_is_unavailable(tmp_path):
    engine = EspeakNg(str(tmp_path / "no-espeak-ng"))
    with pytest.raises(Unavailable) as err:
        await engine.synthesize("hello", "en")
    assert err.value.reason == "tts-unavailable"
    assert "espeak-ng" in err.value.message and "install" in err.value.message


async def test_failing_binary_is_unavailable(tmp_path):
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'voice broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(Unavailable) as err:
        await EspeakNg(str(fake)).synthesize("hello", "en")
    assert err.value.reason == "tts-failed" and "voice broken" in err.value.message


async def test_timeout_kills_the_process(tmp_path):
    pidfile = tmp_path / "pid"
    fake = tmp_path / "espeak-ng"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
    fake.chmod(0o755)
    with pytest.raises(Unavailable) as err:
        await EspeakNg(str(fake), timeout_s=0.5).synthesize("hello", "en")
    assert err.value.reason == "tts-timeout"
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_registry():
    assert tts.engines == {"espeak-ng": EspeakNg}
    engine = get_engine("espeak-ng", timeout_s=5)
    assert isinstance(engine, TtsEngine) and engine.timeout_s == 5
    assert engine.languages == ["cmn", "en", "zh"]
    with pytest.raises(InvalidParams) as err:
        get_engine("festival")
    assert err.value.reason == "unknown-tts-engine"


def test_streaming_wav_header_is_tolerated():
    """espeak-ng on a pipe writes 0x7ffff000 as the sizes; the data runs to the end."""
    pcm = np.full(2205, 1000, "<i2").tobytes()  # 0.1 s at 22050 Hz
    fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
    head = b"RIFF" + struct.pack("<I", 0x7FFFF000) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    out = wav_to_pcm16k(head + b"data" + struct.pack("<I", 0x7FFFF000) + pcm)
    assert len(out) // 2 == pytest.approx(1600, abs=2)
    with pytest.raises(ValueError):
        wav_to_pcm16k(b"not a wav")
