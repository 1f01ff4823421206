"""A real baresip "phone" for tests: auto-answers, records what it hears, can play a WAV or a tone.

    async with BaresipPhone(tone_hz=440) as phone:      # or play_wav=path, or neither (silence)
        ...dial phone.uri from the gateway...
        samples, rate = await phone.recording()          # what baresip decoded, once the call ended

- Its own temp dir holds `config`, `accounts` and the recordings: module sndfile writes
  `dump-*-dec.wav` (what baresip heard, decoded) and `dump-*-enc.wav` (what it sent).
- SIP on 127.0.0.1:<port> (UDP); baresip also binds TCP/TLS on port+1, so ports come from a free
  block of 10. RTP ports come from another free block.
- No sound card: the player is `aubridge` (nothing reads it), the source is `aufile` (a WAV; a
  tone WAV is generated with tests.audio.tone) or `ausine`-free silence via a silent WAV.
- A missing `baresip` binary fails the test (never skips).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import wave
from pathlib import Path

import numpy as np

from tests.audio import read_wav, tone
from tests.peers.ports import free_port_block, udp_free
from tests.peers.process import read_log, require_binary, start_process, stop_process

MODULE_PATH_CANDIDATES = ("/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules",
                          "/usr/lib/x86_64-linux-gnu/baresip/modules")


def write_wav(path: str | Path, pcm: bytes, rate: int) -> Path:
    """Write PCM16LE mono as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return Path(path)


def _module_path() -> str:
    for p in MODULE_PATH_CANDIDATES:
        if Path(p, "sndfile.so").exists():
            return p
    raise RuntimeError("baresip modules (sndfile.so) not found in " + ", ".join(MODULE_PATH_CANDIDATES))



def wav_closed(path: Path) -> bool:
    """Whether a WAV's header states its true length: the RIFF size and the data chunk's size match
    the file, which libsndfile writes when it closes the file (not while it records)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
            size = f.seek(0, 2)
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    if int.from_bytes(head[4:8], "little") != size - 8:
        return False
    at = 12
    while at + 8 <= len(head):
        name, length = head[at:at + 4], int.from_bytes(head[at + 4:at + 8], "little")
        if name == b"data":
            return length == size - at - 8
        at += 8 + length + (length & 1)
    return False

class BaresipPhone:
    """One baresip process with one auto-answering account `sip:<user>@127.0.0.1:<port>`."""

    def __init__(
        self,
        *,
        user: str = "phone",
        tone_hz: float | None = None,
        play_wav: str | Path | None = None,
        play_seconds: float = 30.0,
        host: str = "127.0.0.1",
        console: bool = False,
    ) -> None:
        self.binary = require_binary("baresip")
        self.user = user
        self.host = host
        self.dir = Path(tempfile.mkdtemp(prefix="baresip-"))
        self.port = free_port_block(host, span=10)
        self.rtp_base = free_port_block(host, span=20, tcp=False)
        if play_wav is None:
            pcm = tone(tone_hz, play_seconds, rate=8000) if tone_hz else bytes(int(play_seconds * 8000) * 2)
            play_wav = write_wav(self.dir / "source.wav", pcm, 8000)
        self.source = Path(play_wav)
        self.console = console  # commands over UDP (cons.so): `command()` dials, sends DTMF
        self.log_path = self.dir / "baresip.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    def _write_config(self) -> None:
        cfg = f"""\
module_path		{_module_path()}
poll_method		epoll
sip_listen		{self.host}:{self.port}
call_local_timeout	120
call_max_calls		4
audio_player		aubridge,nowhere-{self.port}
audio_alert		aubridge,nowhere-{self.port}
audio_source		aufile,{self.source}
audio_buffer		20-160
rtp_ports		{self.rtp_base}-{self.rtp_base + 19}
jitter_buffer_delay	1-10
snd_path		{self.dir}
module			g711.so
module			g722.so
module			aufile.so
module			aubridge.so
module			sndfile.so
module_tmp		account.so
module_app		menu.so
"""
        if self.console:
            cfg += f"module\t\t\tcons.so\ncons_listen\t\t{self.host}:{self.port + 5}\n"
        (self.dir / "config").write_text(cfg)
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@{self.host}:{self.port}>;regint=0;answermode=auto\n")
        (self.dir / "contacts").write_text("")

    async def start(self) -> BaresipPhone:
        self._write_config()
        self.proc = await start_process([self.binary, "-f", str(self.dir)], cwd=self.dir,
                                        log=self.log_path)
        async with asyncio.timeout(10):
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"baresip exited with {self.proc.returncode}: {self.log()}")
                if "baresip is ready" in self.log() and not udp_free(self.host, self.port):
                    break
                await asyncio.sleep(0.05)
        return self

    def command(self, line: str) -> None:
        """A long command (`/dial URI`, `/sndcode 1234`: RFC 4733 digits) over the UDP console."""
        assert self.console, "BaresipPhone(console=True) takes commands"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto((line + "\n").encode(), (self.host, self.port + 5))

    def log(self) -> str:
        return read_log(self.log_path)

    def recordings(self, kind: str = "dec") -> list[Path]:
        """sndfile dumps, oldest first: `dec` = what baresip heard, `enc` = what it sent."""
        return sorted(self.dir.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)

    async def recording(self, kind: str = "dec", timeout: float = 10) -> tuple[np.ndarray, int]:
        """The newest dump's samples once sndfile has closed it: the call ended (or baresip
        stopped) and the final header written. Before that the header is the one written at
        open, or half rewritten, and reading it races sndfile."""
        try:
            async with asyncio.timeout(timeout):
                while not ((files := self.recordings(kind)) and wav_closed(files[-1])):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            state = f"open: {files[-1].name}" if files else "nothing"
            raise AssertionError(f"baresip's {kind} recording not closed within {timeout} s ({state}); "
                                 f"log:\n{self.log()[-2000:]}") from None
        return read_wav(files[-1])

    async def wait_log(self, text: str, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.log():
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await stop_process(self.proc, grace=5)

    async def __aenter__(self) -> BaresipPhone:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

