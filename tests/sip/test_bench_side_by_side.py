"""The benchmarks' arithmetic without processes: side-by-side ratios (benchmarks.sip_calls).
The conference benchmark's beeps and their pairing: tests/sip/test_beep_delay.py."""

from __future__ import annotations

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
