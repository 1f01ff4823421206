"""Audio helpers for tests and benchmarks: make tones, read recordings, find what they hold."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.5) -> bytes:
    """A sine tone as PCM16LE mono."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


def frames(pcm: bytes, rate: int = 16000, ms: int = 20) -> list[bytes]:
    """Split PCM16LE into frames of `ms` milliseconds (the last one zero-padded)."""
    size = rate * ms // 1000 * 2
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + b"\0" * (size - len(out[-1]))
    return out


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples of a PCM16 WAV (first channel) as float in [-1, 1], and its rate."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width == 2, f"{path}: sample width {width}, expected 16-bit"
    data = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, 0]
    return data.astype(np.float64) / 32768.0, rate


def pcm_to_array(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency (Hz) of the strongest spectral peak, DC excluded."""
    if len(samples) < rate // 50:
        return 0.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window))
    spectrum[:3] = 0
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(freqs[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def active_span(samples: np.ndarray, rate: int, threshold: float = 0.02) -> np.ndarray:
    """The part of a recording between the first and last 20 ms block louder than `threshold` RMS."""
    block = rate // 50
    n = len(samples) // block
    if n == 0:
        return samples[:0]
    levels = np.sqrt(np.mean(samples[: n * block].reshape(n, block) ** 2, axis=1))
    loud = np.nonzero(levels > threshold)[0]
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] * block : (loud[-1] + 1) * block]
