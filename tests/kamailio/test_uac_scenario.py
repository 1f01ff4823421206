"""The SIPp caller scenario (`uac_call`, tests/peers/sipp.py) against SIPp answerers that behave
like a phone behind Kamailio: a provisional answer relayed after the 200 (Kamailio's receiver
processes can swap them), a 200 retransmitted because the ACK came late. The call must still
succeed; a peer that breaks the dialog (a BYE of its own while the caller holds) must still fail it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.kamailio.sipp_run import HOST, SippUas, run_sipp, successful_calls
from tests.peers.ports import free_udp_port
from tests.peers.sipp import CONTACT, SDP, XML_HEAD, reply, send

pytestmark = pytest.mark.peers

_INVITE_CSEQ = "CSeq: 1 INVITE"


def _answerer(after_ack: str) -> str:
    """Answers OPTIONS (readiness) and one INVITE (180, 200), then `after_ack`, then the BYE."""
    return (
        XML_HEAD + '<scenario name="answerer">\n'
        + '  <recv request="INVITE" optional="true" next="invite"/>\n  <recv request="OPTIONS"/>\n'
        + reply("200 OK", next_label="done") + '  <label id="invite"/>\n'
        + reply("180 Ringing", CONTACT)
        + reply("200 OK", CONTACT, sdp=SDP, retrans=True)
        + '  <recv request="ACK" crlf="true"/>\n'
        + after_ack
        + '  <recv request="BYE"/>\n' + reply("200 OK", tag=False)
        + '  <label id="done"/>\n</scenario>\n'
    )


# the 200 again (tag=False: the ACK's To carries our tag already), each re-ACKed by the caller
_RESENT_200 = reply("200 OK", CONTACT, sdp=SDP, cseq=_INVITE_CSEQ, tag=False) + '  <recv request="ACK"/>\n'
_LATE_180 = reply("180 Ringing", CONTACT, cseq=_INVITE_CSEQ, tag=False)
_OWN_BYE = (send(["BYE [next_url] SIP/2.0", "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
                  "[last_To:]", "[last_From:]", "[last_Call-ID:]", "CSeq: 1 BYE", "Max-Forwards: 70",
                  "Content-Length: 0"])
            + '  <recv response="200" optional="true"/>\n')


async def _call(work: Path, after_ack: str, name: str) -> tuple[int, str, SippUas]:
    (work / f"{name}.xml").write_text(_answerer(after_ack))
    uas = SippUas(work / f"{name}.xml", free_udp_port(), work, name)
    await uas.start()
    try:
        rc, out = await run_sipp(
            "-sf", str(work / "uac.xml"), "-s", "alice", "-i", HOST, "-p", "0", "-m", "1",
            "-timeout", "15", "-timeout_error", f"{HOST}:{uas.port}", cwd=work, timeout=30)
    finally:
        await uas.kill()
    return rc, out, uas


async def test_a_provisional_answer_relayed_after_the_200_does_not_fail_the_call(work: Path) -> None:
    # Seen in CI through Kamailio: "while pausing (index 6), received 'SIP/2.0 180 Ringing'"
    rc, out, _ = await _call(work, _LATE_180, "late_180")
    assert rc == 0 and successful_calls(out) == 1, out[-3000:]


async def test_a_retransmitted_200_is_acked_again(work: Path) -> None:
    # Once: SIPp as the answerer takes an identical second re-ACK for a retransmission and sends
    # its last 200 again by itself, which a phone does not do.
    rc, out, uas = await _call(work, _RESENT_200, "resent_200")
    assert rc == 0 and successful_calls(out) == 1, out[-3000:]
    acks = re.findall(r"^UDP message received.*\n\s*ACK sip:", uas.received(), re.M)
    assert len(acks) == 2, uas.received()[-3000:]  # the ACK, and the ACK of the 200 sent again


async def test_a_peer_that_hangs_up_while_the_caller_holds_still_fails_the_call(work: Path) -> None:
    rc, out, _ = await _call(work, _OWN_BYE, "own_bye")
    assert rc != 0 and successful_calls(out) == 0, out[-3000:]
