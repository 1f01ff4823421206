"""SIPp scenarios for the Kamailio tests, built from the blocks in tests/peers/sipp.py."""

from tests.peers.sipp import CONTACT, RECORD_ROUTE, SDP, XML_HEAD, reply, send, uac_call

_RINGING = reply("180 Ringing", RECORD_ROUTE, CONTACT)

# A "worker": answers OPTIONS probes with 200 and INVITEs with 180/200, then waits for the BYE.
UAS = (
    XML_HEAD + '<scenario name="worker uas">\n'
    + '  <recv request="INVITE" optional="true" next="invite"/>\n  <recv request="OPTIONS"/>\n'
    + reply("200 OK", next_label="done")
    + '  <label id="invite"/>\n'
    + _RINGING
    + reply("200 OK", RECORD_ROUTE, CONTACT, sdp=SDP, retrans=True)
    + '  <recv request="ACK" rtd="true" crlf="true"/>\n  <recv request="BYE"/>\n'
    + reply("200 OK", tag=False)
    + '  <label id="done"/>\n</scenario>\n'
)

# A caller: INVITE, follows the Record-Route set for ACK and BYE (rrs + [routes]/[next_url]).
UAC = uac_call(user="caller", subject="kamailio test", hold_ms=100, play="", name="caller uac")


def _register(cseq: int, *auth: str) -> str:
    return send([
        "REGISTER sip:[remote_ip]:[remote_port] SIP/2.0",
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        "From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]",
        "To: <sip:[service]@[remote_ip]:[remote_port]>", "Call-ID: [call_id]",
        f"CSeq: {cseq} REGISTER", "Contact: <sip:[service]@[local_ip]:[contact_port]>", *auth,
        "Expires: 300", "Max-Forwards: 70", "Content-Length: 0",
    ], retrans=True)


# REGISTER with digest auth: expects a 401 challenge first, then 200. The registered Contact
# points at another port (-key contact_port N), where a UAS scenario answers calls.
REGISTER = (
    XML_HEAD + '<scenario name="register with auth">\n'
    + _register(1)
    + '  <recv response="401" auth="true"/>\n'
    + _register(2, "[authentication]")
    + '  <recv response="200" crlf="true"/>\n</scenario>\n'
)

# A worker that is up (answers OPTIONS) but refuses every INVITE with 503.
UAS_503 = UAS.replace(
    _RINGING, reply("503 Service Unavailable") + '  <recv request="ACK" next="done"/>\n' + _RINGING
)
