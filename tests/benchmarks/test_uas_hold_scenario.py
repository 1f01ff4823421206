"""The benchmarks' SIPp UAS scenario (benchmarks/sip_calls.py UAS_HOLD) against a SIPp caller
that does what a busy pjsua2 worker does in a fan-out: its INVITE's retransmission timer fired
before it read the 100 and the 200 already waiting for it, so a copy of the INVITE reaches the
UAS after its 200, right before the ACK. The UAS must count the call successful (SIPp against
SIPp: nothing of ours in between)."""

from __future__ import annotations

import pytest

from benchmarks.sip_calls import UAS_HOLD, SippUas
from tests.peers.sipp import SDP, XML_HEAD, Sipp, send, uac_request

pytestmark = pytest.mark.peers

# One INVITE, sent twice: the same branch, so the copy is a retransmission of the first.
_INVITE = send([
    "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
    "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-retrans-[call_number]",
    'From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]',
    "To: <sip:[service]@[remote_ip]:[remote_port]>", "Call-ID: [call_id]", "CSeq: 1 INVITE",
    "Contact: <sip:sipp@[local_ip]:[local_port]>", "Max-Forwards: 70",
    "Content-Type: application/sdp", "Content-Length: [len]",
], body=SDP)

LATE_RETRANSMISSION = (
    XML_HEAD + '<scenario name="uac-invite-retransmitted-after-the-200">\n'
    + _INVITE
    + '  <recv response="100" optional="true"/>\n'
    + '  <recv response="200" rrs="true"/>\n'
    + _INVITE  # the retransmission the caller's timer sent before it read the 200
    + uac_request("ACK", 1, retrans=False)
    + '  <pause milliseconds="300"/>\n'
    + uac_request("BYE", 2)
    + '  <recv response="200" crlf="true"/>\n</scenario>\n'
)


async def test_an_invite_retransmitted_after_the_200_does_not_fail_the_call() -> None:
    """Seen in the 500-target broadcast benchmark (docs/benchmarks.md): 137-211 of 500 calls
    "Aborting call on unexpected message ... while sending (index 2), received 'ACK'". Before the
    fix the scenario went back to sending its 200 for the copy; SIPp sends nothing while a message
    of its own still retransmits, so the call waited there for the ACK, which then was unexpected."""
    uas = SippUas(UAS_HOLD, calls=1, timeout_s=20, echo=False, trace=True)
    await uas.start()
    try:
        caller = Sipp(LATE_RETRANSMISSION, remote=f"127.0.0.1:{uas.port}", service="spk0", timeout_s=15)
        async with caller:
            res = await caller.wait(20)
        got = await uas.wait(15)
    finally:
        await uas.stop()
    trace = uas.messages.read_text(errors="replace") if uas.messages.exists() else ""
    assert trace.count("INVITE sip:spk0@") == 2, trace[-3000:]  # the copy did reach the UAS
    assert (got["successful"], got["failed"]) == (1, 0), (got, trace[-3000:])
    assert res.returncode == 0 and res.successful == 1, res.errors[-2000:]
