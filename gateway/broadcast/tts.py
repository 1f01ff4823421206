"""Text to speech for broadcasts: pluggable engines returning 16 kHz mono PCM16LE.

An engine is a `TtsEngine`: `await engine.synthesize(text, language)`. The request is checked
first (`check_request`): empty text is `InvalidParams(empty-text)`, text over `MAX_TEXT_CHARS` is
`InvalidParams(text-too-long)`, a language the engine has no voice for is
`InvalidParams(unsupported-language)`. An engine that cannot run (binary missing, crashed, timed
out) raises `Unavailable` (`tts-unavailable`, `tts-failed`, `tts-timeout`).

`EspeakNg` runs the espeak-ng binary (Debian package espeak-ng) as an asyncio subprocess: the text
goes in on stdin (never through a shell, never as an option), the WAV comes out on stdout at
22050 Hz and is resampled to 16 kHz in a worker thread.

`engines` maps the config's `broadcast.tts_engine` names to classes; `get_engine(name)` builds one.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import signal
import struct
import sys
import warnings
from collections.abc import Mapping

import structlog

from gateway.errors import InvalidParams, Unavailable
from sip.lifeline import preexec_die_with_parent

with warnings.catch_warnings():  # deprecated in 3.11, removed in 3.13 (then: audioop-lts)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = structlog.get_logger(__name__)

RATE = 16000
MAX_TEXT_CHARS = 5000
_BIG_ENDIAN = sys.byteorder == "big"


def check_request(text: str, language: str, voices: Mapping[str, str]) -> tuple[str, str]:
    """Validate a request; returns (the text to speak, the engine's voice for `language`)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidParams("text to speak is empty", reason="empty-text")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidParams(f"text to speak is {len(text)} characters, at most {MAX_TEXT_CHARS}",
                            reason="text-too-long",
                            details={"length": len(text), "max": MAX_TEXT_CHARS})
    key = language.strip().lower() if isinstance(language, str) else language
    voice = voices.get(key) if isinstance(key, str) else None
    if voice is None:
        raise InvalidParams(f"unsupported language {language!r}: expected one of "
                            f"{', '.join(sorted(voices))}", reason="unsupported-language",
                            details={"language": language, "supported": sorted(voices)})
    # control characters mean nothing to a voice; NUL would end the text early
    clean = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text).strip()
    return clean, voice


class TtsEngine(abc.ABC):
    """A text-to-speech engine. `voices` maps the accepted language codes to engine voices."""

    name: str = ""
    voices: Mapping[str, str] = {}

    @property
    def languages(self) -> list[str]:
        return sorted(self.voices)

    @abc.abstractmethod
    async def synthesize(self, text: str, language: str) -> bytes:
        """Speak `text` in `language`: 16 kHz mono PCM16LE."""


# -- WAV as espeak-ng writes it to a pipe ---------------------------------------------------------
def wav_to_pcm16k(data: bytes) -> bytes:
    """A PCM16 WAV (as bytes) -> 16 kHz mono PCM16LE.

    Tolerates the streaming header espeak-ng writes to a pipe (RIFF and data sizes of 0x7ffff000):
    the data chunk runs to the end of what was received.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16:
                raise ValueError("fmt chunk too short")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if tag != 1 or bits != 16 or channels < 1:
                raise ValueError(f"unsupported WAV: format {tag}, {bits} bit, {channels} channels")
            pcm = data[body : body + min(size, len(data) - body)]
            pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
            if _BIG_ENDIAN:
                pcm = audioop.byteswap(pcm, 2)
            if channels == 2:
                pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
            elif channels > 2:
                raise ValueError(f"unsupported WAV: {channels} channels")
            if rate != RATE and pcm:
                pcm, _ = audioop.ratecv(pcm, 2, 1, rate, RATE, None)
            return audioop.byteswap(pcm, 2) if _BIG_ENDIAN else pcm
        pos = body + size + (size & 1)
    raise ValueError("no data chunk")


class EspeakNg(TtsEngine):
    """espeak-ng: Mandarin (`zh`, `cmn`: voice `cmn`) and English (`en`: voice `en`)."""

    name = "espeak-ng"
    voices = {"zh": "cmn", "cmn": "cmn", "en": "en"}

    def __init__(self, binary: str = "espeak-ng", *, timeout_s: float = 30.0,
                 speed_wpm: int | None = None) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self.speed_wpm = speed_wpm

    async def synthesize(self, text: str, language: str) -> bytes:
        text, voice = check_request(text, language, self.voices)
        argv = [self.binary, "-v", voice, "-b", "1", "--stdout"]  # -b 1: the input is UTF-8
        if self.speed_wpm:
            argv += ["-s", str(int(self.speed_wpm))]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, preexec_fn=preexec_die_with_parent(signal.SIGKILL))
        except (FileNotFoundError, PermissionError) as err:
            raise Unavailable(f"text to speech unavailable: cannot run {self.binary!r} "
                              f"({err.strerror}); install the Debian package espeak-ng",
                              reason="tts-unavailable", details={"engine": self.name}) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode() + b"\n"), self.timeout_s)
        except TimeoutError:
            raise Unavailable(f"{self.name} took longer than {self.timeout_s:g} s",
                              reason="tts-timeout", details={"engine": self.name}) from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: do not leave it running
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await proc.wait()
        if proc.returncode != 0:
            why = err.decode(errors="replace").strip()[-300:]
            log.warning("tts.failed", engine=self.name, rc=proc.returncode, stderr=why)
            raise Unavailable(f"{self.name} failed (exit {proc.returncode}): {why}",
                              reason="tts-failed", details={"engine": self.name})
        try:
            pcm = await asyncio.to_thread(wav_to_pcm16k, out)
        except ValueError as exc:
            log.warning("tts.bad_output", engine=self.name, why=str(exc), bytes=len(out))
            raise Unavailable(f"{self.name} gave no usable audio: {exc}", reason="tts-failed",
                              details={"engine": self.name}) from None
        log.debug("tts.done", engine=self.name, voice=voice, chars=len(text),
                  seconds=round(len(pcm) / (2 * RATE), 2))
        return pcm


engines: dict[str, type[TtsEngine]] = {"espeak-ng": EspeakNg}


def get_engine(name: str, **options: object) -> TtsEngine:
    """An engine instance by its config name (`broadcast.tts_engine`)."""
    cls = engines.get(name)
    if cls is None:
        raise InvalidParams(f"unknown TTS engine {name!r}: expected one of {', '.join(sorted(engines))}",
                            reason="unknown-tts-engine",
                            details={"engine": name, "supported": sorted(engines)})
    return cls(**options)  # type: ignore[arg-type]
