"""The mouth-to-ear method's core on synthetic audio, without sockets (benchmarks.beep_delay):
an onset is found at the frame and sample it was put at, timed on the frames' arrival clock, through
G.711 mu-law as on the wire; one beep is one onset; heard beeps pair with the last beep sent.
Last, its I/O layer (benchmarks.rtp_member) on loopback sockets through a relay of known hold."""

from __future__ import annotations

import numpy as np

from benchmarks.beep_delay import (
    FRAME_SAMPLES,
    NS,
    RATE,
    BeepPlan,
    OnsetDetector,
    onsets_in,
    pair_delays,
    ulaw_decode,
    ulaw_encode,
)

MS = 1_000_000


def framed(x: np.ndarray, t0: int = 5 * NS, jitter_ns: list[int] | None = None) -> list[tuple[int, np.ndarray]]:
    """x cut in 20 ms frames through mu-law, frame k arriving at t0 + k*20 ms (+ its jitter)."""
    n = len(x) // FRAME_SAMPLES
    out = []
    for k in range(n):
        pcm = ulaw_decode(ulaw_encode(x[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]))
        out.append((t0 + k * 20 * MS + (jitter_ns[k] if jitter_ns else 0), pcm))
    return out


def tone(n: int, amp: float = 0.4) -> np.ndarray:
    return (np.cos(2 * np.pi * 1000 * np.arange(n) / RATE) * amp * 32767).astype(np.int16)


def test_an_onset_is_timed_at_its_frames_arrival_plus_its_sample_offset() -> None:
    rng = np.random.default_rng(7)
    x = (rng.normal(0, 300, 200 * FRAME_SAMPLES)).astype(np.int16)  # background well under 1/16 scale
    at = 137 * FRAME_SAMPLES + 45
    x[at:at + 480] = tone(480)
    jitter = [int(v) for v in rng.integers(0, 3 * MS, 200)]
    found = onsets_in(framed(x, jitter_ns=jitter))
    assert found == [5 * NS + 137 * 20 * MS + jitter[137] + 45 * NS // RATE]


def test_the_talkers_plan_starts_each_beep_at_sample_0_of_its_frame_and_each_is_one_onset() -> None:
    plan = BeepPlan(lead=25, every=50, beep_frames=3)
    x = np.concatenate([plan.frame(k) for k in range(200)])
    assert [k for k in range(200) if plan.starts_beep(k)] == [25, 75, 125, 175]
    assert abs(int(plan.frame(25)[0])) > 32768 // 16  # loud from its first sample
    assert not plan.frame(24).any() and not plan.frame(28).any()
    found = onsets_in(framed(x, t0=0))
    assert found == [k * 20 * MS for k in (25, 75, 125, 175)]


def test_a_gap_in_the_stream_counts_as_quiet_by_arrival_time_and_a_beep_within_200_ms_is_not_new() -> None:
    d = OnsetDetector()
    loud, quiet = tone(FRAME_SAMPLES), np.zeros(FRAME_SAMPLES, dtype=np.int16)
    assert d.feed(0, loud) == [0]
    assert d.feed(100 * MS, loud) == []  # 100 ms after the last loud sample: the same beep
    assert d.feed(120 * MS, quiet) == []
    # no frames for 300 ms (lost, or not sent): quiet long enough for the next beep to be an onset
    assert d.feed(440 * MS, loud) == [440 * MS]


def test_frames_go_through_g711_mu_law_with_silence_as_0xff() -> None:
    assert ulaw_encode(np.zeros(3, dtype=np.int16)) == b"\xff\xff\xff"
    x = tone(FRAME_SAMPLES)
    err = np.abs(ulaw_decode(ulaw_encode(x)).astype(np.int32) - x)
    assert (err <= np.maximum(8, np.abs(x.astype(np.int32)) // 16)).all()  # within half a step


def test_a_heard_beep_pairs_with_the_last_one_sent_before_it() -> None:
    sent = [10 * NS, 11 * NS, 12 * NS]
    heard = [10 * NS + 30 * MS, 11 * NS + 20 * MS, 11 * NS + 900 * MS, 13 * NS + 600 * MS]
    # 11.9 s and 13.6 s: over 0.5 s after the last beep sent before them
    assert pair_delays(sent, heard, 500 * MS) == [30 * MS, 20 * MS]
    assert pair_delays([], heard, 500 * MS) == []


def test_the_rtp_legs_read_each_beep_when_the_relay_between_them_forwarded_it() -> None:
    """The I/O layer on loopback sockets (no gateway): talker -> relay holding 30 ms -> listener.
    Each beep is heard when the relay forwarded its packet (the relay notes when, by RTP sequence
    number), so a reading is the path's delay and not the measuring threads' scheduling."""
    import time

    from benchmarks.beep_delay import pair_onsets
    from benchmarks.rtp_member import RtpLeg, RtpRelay

    talker, listener, relay = RtpLeg(BeepPlan(lead=5, every=25)), RtpLeg(), RtpRelay(30)
    try:
        relay.start(("127.0.0.1", listener.port))
        listener.start(None)
        talker.start(("127.0.0.1", relay.port))
        deadline = time.monotonic() + 30
        while len(listener.detector.onsets) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)  # polls the condition; the deadline only bounds a broken run
    finally:
        for leg in (talker, relay, listener):
            leg.stop()
    pairs = pair_onsets(talker.sent_onsets, listener.detector.onsets, 400 * MS)
    assert len(pairs) >= 4
    seq_of = dict(zip(talker.sent_onsets, talker.onset_seqs))
    for sent, heard in pairs:
        forwarded = relay.forwarded[seq_of[sent]]
        assert heard - sent >= 30 * MS
        assert 0 <= heard - forwarded < 2 * MS  # the kernel stamps it as the relay sends it
