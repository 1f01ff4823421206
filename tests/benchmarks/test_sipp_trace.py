"""benchmarks/sipp_trace.py reads a SIPp UAS's message trace (no processes)."""

from __future__ import annotations

from benchmarks.sipp_trace import parse, summary


def _msg(t: str, sent: bool, first: str, call_id: str) -> str:
    how = "UDP message sent (100 bytes):" if sent else "UDP message received [100] bytes :"
    return (f"----------------------------------------------- 2026-12-02 06:00:{t}\n{how}\n\n{first}\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5060\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContent-Length: 0\n\n\n")


def test_an_invite_copy_after_the_200_and_the_abort_are_found() -> None:
    trace = "".join([
        _msg("00.000000", False, "INVITE sip:spk0@127.0.0.1:5070 SIP/2.0", "a"),
        _msg("00.001000", True, "SIP/2.0 100 Trying", "a"),
        _msg("00.002000", True, "SIP/2.0 200 OK", "a"),
        _msg("00.100000", False, "INVITE sip:spk1@127.0.0.1:5070 SIP/2.0", "b"),
        _msg("00.101000", True, "SIP/2.0 100 Trying", "b"),
        _msg("00.102000", True, "SIP/2.0 200 OK", "b"),
        _msg("00.150000", False, "ACK sip:127.0.0.1:5070 SIP/2.0", "b"),
        _msg("00.500000", False, "INVITE sip:spk0@127.0.0.1:5070 SIP/2.0", "a"),  # the copy
        _msg("00.500100", False, "ACK sip:127.0.0.1:5070 SIP/2.0", "a"),
    ])
    errors = ("2026-12-02 06:00:00.500200: Aborting call on unexpected message for Call-Id 'a': while sending "
              "(index 2), received 'ACK sip:127.0.0.1:5070 SIP/2.0\n")
    msgs = parse(trace)
    assert [(m.call_id, m.sent) for m in msgs][:3] == [("a", False), ("a", True), ("a", True)]
    s = summary(msgs, errors)
    assert (s["calls"], s["invite_copies"], s["aborted"], s["aborted_with_copy"]) == (2, 1, 1, 1)
    assert s["copy_after_first_ms"] == {"min": 500.0, "p50": 500.0, "max": 500.0}
    assert s["copy_after_200_ms"]["p50"] == 498.0 and s["copies_before_200"] == 0
    assert s["ack_after_200_ms"] == {"min": 48.0, "p50": 273.0, "max": 498.1}
