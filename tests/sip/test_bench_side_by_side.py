"""The benchmarks' arithmetic without processes: side-by-side ratios (benchmarks.sip_calls) and the
conference benchmark's pairing of beeps sent with beeps heard (benchmarks.conferences)."""

from __future__ import annotations

from benchmarks.conferences import beep_wav_pcm, pair_delays
from benchmarks.sip_calls import build_env, summary_table


def test_ratios_are_first_build_over_second_per_size_and_only_where_both_ran() -> None:
    res = {("source", 200): [{"ok": True, "cpu_cores": 0.5, "pss_mb_per_call": 1.0}, {"ok": True, "cpu_cores": 0.7}],
           ("wheel", 200): [{"ok": True, "cpu_cores": 1.2, "pss_mb_per_call": 4.0}],
           ("source", 500): [{"ok": True, "cpu_cores": 1.5}]}
    text = summary_table(res, ["source", "wheel"])
    rows = [ln for ln in text.splitlines() if ln.startswith("| 200 |")]
    assert len(rows) == 1 and rows[0].startswith("| 200 | 0.50 | 0.25 |")  # median 0.6 / 1.2; 1 / 4
    assert not any(ln.startswith("| 500 |") for ln in text.splitlines())  # the wheel did not run 500
    assert "| source | 500 | 1/1 |" in text


def test_each_gateway_gets_its_build_in_the_environment() -> None:
    assert build_env("wheel")["DISPATCH_GATEWAY_PJSUA2"] == "wheel"
    assert build_env("source")["DISPATCH_GATEWAY_PJSUA2"] == "source"


def test_a_heard_beep_pairs_with_the_last_one_sent_before_it() -> None:
    sent = [10.0, 11.0, 12.0]
    heard = [10.03, 11.02, 11.9, 13.6]  # 11.9 and 13.6: over 0.5 s after the last beep sent
    assert [round(d, 3) for d in pair_delays(sent, heard, window=0.5)] == [0.03, 0.02]
    assert pair_delays([], heard, window=0.5) == []


def test_the_talkers_wav_has_one_beep_a_second_after_the_lead() -> None:
    import numpy as np
    x = np.frombuffer(beep_wav_pcm(6.0, 1.0, lead=2.0), dtype="<i2")
    loud = np.flatnonzero(np.abs(x) > 1000) / 8000
    starts = [t for i, t in enumerate(loud) if i == 0 or t - loud[i - 1] > 0.2]
    assert [round(t, 1) for t in starts] == [2.0, 3.0, 4.0, 5.0]
