"""Mouth-to-ear delay from beeps, sans I/O: the talker's frames, G.711 mu-law, onset detection, pairing.

Used by benchmarks.rtp_member (which sends and receives the frames on real sockets) and tested on
synthetic audio in tests/sip/test_beep_delay.py, without sockets.

- `BeepPlan` says what the talker sends in frame k (20 ms of 8 kHz PCM16): silence, or a 1 kHz
  cosine (it starts at full amplitude, so its onset is sample 0 of its first frame: no sample of a
  rising sine below the threshold) for `beep_frames` frames every `every` frames after `lead`.
- `OnsetDetector` is fed the received frames with their arrival times; an onset is the first
  sample over `threshold` after at least `quiet_s` with none, timed at the frame's arrival plus the
  sample's offset in it (a frame's first sample is the one "heard" when the frame arrives).
- `pair_onsets` / `pair_delays`: each heard onset paired with the last beep sent before it,
  within a window.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from gateway.broadcast.rtp import CLOCK_RATES, FRAME_MS

with warnings.catch_warnings():  # deprecated in 3.11, removed in 3.13 (as in gateway.broadcast.rtp)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = CLOCK_RATES["PCMU"]  # 8000
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160
NS = 1_000_000_000


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """PCM16 samples to G.711 mu-law bytes."""
    return audioop.lin2ulaw(pcm.astype("<i2").tobytes(), 2)


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to PCM16 samples."""
    return np.frombuffer(audioop.ulaw2lin(data, 2), dtype="<i2")


@dataclass(frozen=True)
class BeepPlan:
    """Frame k of the talker's stream: a beep starts at frames lead, lead+every, ... (sample 0)."""

    lead: int = 100  # 2 s of silence first: the member joins and the jitter buffers settle
    every: int = 50  # one beep a second
    beep_frames: int = 3  # 60 ms
    amplitude: float = 0.4  # of full scale
    hz: float = 1000.0

    def starts_beep(self, k: int) -> bool:
        return k >= self.lead and (k - self.lead) % self.every == 0

    def frame(self, k: int) -> np.ndarray:
        """The 160 samples of frame k."""
        if k < self.lead or (k - self.lead) % self.every >= self.beep_frames:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        n = ((k - self.lead) % self.every) * FRAME_SAMPLES + np.arange(FRAME_SAMPLES)
        return (np.cos(2 * np.pi * self.hz * n / RATE) * self.amplitude * 32767).astype(np.int16)


class OnsetDetector:
    """Onsets in a received stream of frames, each frame timed by its arrival (ns, any one clock)."""

    def __init__(self, rate: int = RATE, threshold: int = 32768 // 16, quiet_s: float = 0.2) -> None:
        self.rate, self.threshold, self.quiet_ns = rate, threshold, int(quiet_s * NS)
        self._last_loud: int | None = None
        self.onsets: list[int] = []  # ns
        self.frames = 0

    def feed(self, arrival_ns: int, pcm: np.ndarray) -> list[int]:
        """Take one frame; the onsets (ns) it holds."""
        self.frames += 1
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > self.threshold)
        found: list[int] = []
        for i in loud:
            t = arrival_ns + int(i) * NS // self.rate
            if self._last_loud is None or t - self._last_loud >= self.quiet_ns:
                found.append(t)
            self._last_loud = t
        self.onsets += found
        return found


def onsets_in(frames: Iterable[tuple[int, np.ndarray]], **kw: float) -> list[int]:
    """The onsets (ns) of a whole stream of (arrival_ns, frame)."""
    d = OnsetDetector(**kw)  # type: ignore[arg-type]
    for t, pcm in frames:
        d.feed(t, pcm)
    return d.onsets


def pair_onsets(sent: list[int], heard: list[int], window_ns: int) -> list[tuple[int, int]]:
    """Each heard onset paired with the last sent onset at or before it (within `window_ns`)."""
    out, s = [], sorted(sent)
    j = 0
    for h in sorted(heard):
        while j < len(s) and s[j] <= h:
            j += 1
        if j and h - s[j - 1] <= window_ns:
            out.append((s[j - 1], h))
    return out


def pair_delays(sent: list[int], heard: list[int], window_ns: int) -> list[int]:
    """The delays (ns) of `pair_onsets`."""
    return [h - s for s, h in pair_onsets(sent, heard, window_ns)]
