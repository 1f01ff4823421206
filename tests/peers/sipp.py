"""Start real SIPp peers for tests: UAS scenarios (answer, busy, no-answer) and a UAC caller.

Every SIPp runs on 127.0.0.1 with ports picked at run time, its own temp dir for scenario files,
statistics (CSV) and a message trace. `await peer.wait()` returns a `SippResult` with SIPp's exit
status and its final statistics, so tests assert on what SIPp really saw.

    async with sipp_uas("answer") as uas:          # uas.uri -> "sip:svc@127.0.0.1:<port>"
        ...dial uas.uri, hang up...
        res = await uas.wait(10)
        assert res.returncode == 0 and res.successful == 1
        assert "BYE sip:" in res.messages

SIPp exit codes: 0 all calls succeeded, 1 at least one failed, 97 killed by a command, 99 normal
exit without calls processed, 255/-1 fatal, 254/-2 could not bind.
A missing `sipp` binary fails the test (never skips): the peers are part of the test contract.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# free_port_block: re-exported for the callers that import it from here
from tests.peers.ports import free_port_block, free_udp_port, udp_free  # noqa: F401
from tests.peers.process import read_log, require_binary, start_process, stop_process

SIPP = "sipp"


# ---- scenario building blocks (also used by tests/kamailio/scenarios.py) ---------------------

XML_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'

SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""
_SDP = SDP

CONTACT = "Contact: <sip:[local_ip]:[local_port];transport=[transport]>"
RECORD_ROUTE = "[last_Record-Route:]"
TO_TAG = ";tag=[pid]SIPpTag01[call_number]"


def send(lines: list[str] | tuple[str, ...], *, body: str | None = None, retrans: bool = False,
         next_label: str | None = None) -> str:
    """A <send> of one SIP message: its start line and headers, then `body` (verbatim) if any."""
    attrs = (' retrans="500"' if retrans else "") + (f' next="{next_label}"' if next_label else "")
    text = "".join(f"      {line}\n" for line in lines)
    if body is not None:
        text += "\n" + body
    return f"  <send{attrs}>\n    <![CDATA[\n{text}    ]]>\n  </send>\n"


def reply(status: str, *headers: str, tag: bool = True, cseq: str = "[last_CSeq:]",
          sdp: str | None = None, retrans: bool = False, next_label: str | None = None) -> str:
    """A <send> of a response to the last request: `status` ("200 OK"), the dialog headers copied
    from the request (To gets our tag when `tag`), extra `headers`, then `sdp` or no body."""
    lines = [f"SIP/2.0 {status}", "[last_Via:]", "[last_From:]",
             "[last_To:]" + (TO_TAG if tag else ""), "[last_Call-ID:]", cseq, *headers]
    lines += ["Content-Type: application/sdp", "Content-Length: [len]"] if sdp is not None \
        else ["Content-Length: 0"]
    return send(lines, body=sdp, retrans=retrans, next_label=next_label)


def uac_request(method: str, cseq: int, *, user: str = "sipp", uri: str = "[next_url]",
                to: str = "[last_To:]", routes: bool = True, headers: tuple[str, ...] = (),
                sdp: str | None = None, retrans: bool = True, next_label: str | None = None) -> str:
    """A <send> of a caller's request (INVITE, ACK, BYE) from sip:`user`@ SIPp's address."""
    lines = [f"{method} {uri} SIP/2.0", *(["[routes]"] if routes else []),
             "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
             f'From: "sipp" <sip:{user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]',
             to, "Call-ID: [call_id]", f"CSeq: {cseq} {method}",
             f"Contact: <sip:{user}@[local_ip]:[local_port]>", "Max-Forwards: 70", *headers]
    lines += ["Content-Type: application/sdp", "Content-Length: [len]"] if sdp is not None \
        else ["Content-Length: 0"]
    return send(lines, body=sdp, retrans=retrans, next_label=next_label)


def uac_call(*, user: str = "sipp", subject: str = "Performance Test",
             hold_ms: object = "{hold_ms}", play: str = "{play}", name: str = "uac-call") -> str:
    """A caller: INVITE sip:[service]@remote, waits for the 200 (following its Record-Route), ACK,
    `play` (scenario lines run after the ACK), holds the call `hold_ms`, BYE, waits for its 200.

    While it holds, a retransmitted 200 (our ACK crossed it, or came late through a proxy) is
    ACKed again, and a provisional answer the proxy relayed after the 200 (Kamailio's receiver
    processes can swap a 180 and the 200) is taken; each restarts the hold. Anything else then
    (a BYE, a request) still aborts the call as unexpected, and the BYE must be answered 200."""
    hold = f'timeout="{hold_ms}" ontimeout="bye"'
    return (
        XML_HEAD + f'<scenario name="{name}">\n'
        + uac_request("INVITE", 1, user=user, uri="sip:[service]@[remote_ip]:[remote_port]",
                      to="To: <sip:[service]@[remote_ip]:[remote_port]>", routes=False,
                      headers=(f"Subject: {subject}",), sdp=SDP)
        + """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
"""
        + uac_request("ACK", 1, user=user, retrans=False)
        + f'{play}  <label id="hold"/>\n'
        + f'  <recv response="180" optional="true" {hold} next="hold"/>\n'
        + f'  <recv response="183" optional="true" {hold} next="hold"/>\n'
        + f'  <recv response="200" {hold}/>\n'
        + uac_request("ACK", 1, user=user, retrans=False, next_label="hold")
        + '  <label id="bye"/>\n'
        + uac_request("BYE", 2, user=user)
        + '  <recv response="200" crlf="true"/>\n</scenario>\n'
    )



def _ack_final() -> str:
    """The ACK of a non-2xx final answer: hop-by-hop, same Via (branch) as the INVITE."""
    return send(["ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0", "[last_Via:]", "[last_From:]",
                 "[last_To:]", "[last_Call-ID:]", "CSeq: 1 ACK", "Max-Forwards: 70", "Content-Length: 0"])


def uac_ring(*, user: str = "sipp", name: str = "uac-ring") -> str:
    """A caller that lets the call ring: INVITE, then either 180 (the call rings and stays ringing
    until the gateway ends it with a final answer, which is ACKed) or a final refusal at once
    (486, 500, 503, ACKed). Every outcome completes the call, so SIPp's counts stay meaningful;
    which one each call got is in the message trace."""
    finals = ("486", "480", "500", "503", "603")
    refusals = "".join(f'  <recv response="{c}" optional="true" next="final"/>\n' for c in finals[:-1])
    return (
        XML_HEAD + f'<scenario name="{name}">\n'
        + uac_request("INVITE", 1, user=user, uri="sip:[service]@[remote_ip]:[remote_port]",
                      to="To: <sip:[service]@[remote_ip]:[remote_port]>", routes=False, sdp=SDP)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true" next="ringing"/>\n'
        + refusals + f'  <recv response="{finals[-1]}" next="final"/>\n'
        + '  <label id="ringing"/>\n'
        + refusals + f'  <recv response="{finals[-1]}" next="final"/>\n'
        + '  <label id="final"/>\n'
        + _ack_final()
        + "</scenario>\n"
    )

# ---- scenarios ------------------------------------------------------------------------------

def _uas_head(name: str, action: str = "") -> str:
    return (XML_HEAD + f'<scenario name="{name}">\n'
            + f'  <recv request="INVITE" crlf="true" rrs="true">{action}</recv>\n'
            + reply("100 Trying"))


_CSEQ_ACTION = """
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseqnum"/>
    </action>
  """

_RINGING = reply("180 Ringing", CONTACT)
_BYE_OK = '  <recv request="BYE"/>\n' + reply("200 OK", tag=False)
_END = '  <timewait milliseconds="500"/>\n</scenario>\n'

UAS_ANSWER = (
    _uas_head("uas-answer")
    + _RINGING
    + reply("200 OK", CONTACT, sdp=SDP, retrans=True)
    + '  <recv request="ACK" crlf="true"/>\n'
    + _BYE_OK
    + _END
)

UAS_BUSY = (
    _uas_head("uas-busy")
    + reply("486 Busy Here")
    + '  <recv request="ACK" crlf="true"/>\n'
    + _END
)

# Rings and never answers; expects the caller to CANCEL (answers 200 to the CANCEL, 487 to the
# INVITE, takes the ACK).
UAS_NO_ANSWER = (
    _uas_head("uas-no-answer", _CSEQ_ACTION)
    + _RINGING
    + '  <recv request="CANCEL"/>\n'
    + reply("200 OK")
    + reply("487 Request Terminated", cseq="CSeq: [$cseqnum] INVITE")
    + '  <recv request="ACK" crlf="true"/>\n'
    + _END
)

_SDP_DTMF = _SDP.replace("RTP/AVP 0\n", "RTP/AVP 0 101\n") + """a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
"""

# Where SIPp's packaged RTP captures live (play_pcap_audio); DTMF digits as RFC 2833 events.
SIPP_PCAP_DIRS = ("/usr/share/sip-tester", "/usr/share/sipp/pcap", "/usr/local/share/sipp/pcap")


def sipp_pcap(name: str) -> str:
    for d in SIPP_PCAP_DIRS:
        p = Path(d, name)
        if p.exists():
            return str(p)
    raise RuntimeError(f"SIPp capture {name} not found in {SIPP_PCAP_DIRS}")


# Calls the service, waits for the answer, talks for `hold_ms`, hangs up with BYE.
# {play} becomes an <exec play_pcap_audio> (e.g. RFC 2833 DTMF) right after the ACK.
UAC_CALL = uac_call()


def _reinvite_ok(direction: str) -> str:
    return (reply("200 OK", CONTACT, tag=False, sdp=SDP + f"a={direction}\n", retrans=True)
            + '  <recv request="ACK" crlf="true"/>\n')


# Answers, then expects from the caller: a hold re-INVITE (a=sendonly), an unhold re-INVITE
# (a=sendrecv), a REFER (answered 202, then a NOTIFY carrying "SIP/2.0 200 OK"), and a BYE.
# A missing or different step fails the call (SIPp exit status 1).
UAS_FEATURES = (
    _uas_head("uas-features")
    + _RINGING
    + reply("200 OK", CONTACT, sdp=SDP, retrans=True)
    + '  <recv request="ACK" crlf="true"/>\n'
    + """  <recv request="INVITE">
    <action>
      <ereg regexp="a=sendonly" search_in="body" check_it="true" assign_to="hold"/>
    </action>
  </recv>
"""
    + _reinvite_ok("recvonly")
    + """  <recv request="INVITE">
    <action>
      <ereg regexp="a=sendrecv" search_in="body" check_it="true" assign_to="unhold"/>
    </action>
  </recv>
"""
    + _reinvite_ok("sendrecv")
    + """  <recv request="REFER">
    <action>
      <ereg regexp="sip:[^>;]+" search_in="hdr" header="Refer-To:" check_it="true" assign_to="target"/>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="peer"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="me"/>
    </action>
  </recv>
"""
    + reply("202 Accepted", CONTACT, tag=False)
    + send(["NOTIFY [next_url] SIP/2.0",
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            "From:[$me]", "To:[$peer]", "[last_Call-ID:]", "CSeq: 1 NOTIFY", CONTACT,
            "Max-Forwards: 70", "Event: refer", "Subscription-State: terminated;reason=noresource",
            "Content-Type: message/sipfrag;version=2.0", "Content-Length: [len]"],
           body="      SIP/2.0 200 OK\n", retrans=True)
    + '  <recv response="200"/>\n'
    + _BYE_OK
    + '  <timewait milliseconds="500"/>\n  <Reference variables="hold,unhold,target"/>\n</scenario>\n'
)

# A registrar that challenges (401, digest), checks the credentials, accepts the REGISTER, then
# accepts the un-REGISTER sent at shutdown. Bad credentials get 403 and fail the call.
REGISTRAR = (
    XML_HEAD + '<scenario name="registrar">\n  <recv request="REGISTER"/>\n'
    + reply("401 Unauthorized",
            'WWW-Authenticate: Digest realm="{realm}", nonce="[pid]n[call_number]c0ffee", algorithm=MD5')
    + """  <recv request="REGISTER">
    <action>
      <verifyauth assign_to="authvalid" username="{username}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
"""
    + reply("403 Forbidden", next_label="end")
    + '  <label id="good"/>\n'
    + reply("200 OK", "[last_Contact:];expires={expires}", "Expires: {expires}")
    + '  <recv request="REGISTER"/>\n'
    + reply("200 OK")
    + '  <label id="end"/>\n</scenario>\n'
)

# Rings, answers only after {answer_after_ms} (a phone picked up late), then waits for the BYE.
UAS_LATE_ANSWER = (
    _uas_head("uas-late-answer")
    + _RINGING
    + '  <pause milliseconds="{answer_after_ms}"/>\n'
    + reply("200 OK", CONTACT, sdp=SDP, retrans=True)
    + '  <recv request="ACK" crlf="true"/>\n'
    + _BYE_OK
    + _END
)

UAS_SCENARIOS = {"answer": UAS_ANSWER, "busy": UAS_BUSY, "no-answer": UAS_NO_ANSWER, "features": UAS_FEATURES}


# ---- process wrapper ------------------------------------------------------------------------


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    stats: dict[str, str] = field(default_factory=dict)
    messages: str = ""  # SIPp's message trace (-trace_msg)
    errors: str = ""  # SIPp's error trace (-trace_err)

    def count(self, text: str) -> int:
        return self.messages.count(text)


class Sipp:
    """One SIPp process. Use `async with`, or `await start()` / `await wait()` / `await stop()`."""

    def __init__(
        self,
        scenario_xml: str,
        *,
        port: int | None = None,
        remote: str | None = None,
        calls: int = 1,
        rate: float | None = None,
        service: str = "svc",
        timeout_s: float = 30,
        extra_args: list[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.binary = require_binary(SIPP)
        self.host = host
        self.port = port or free_udp_port(host)
        self.media_port = free_udp_port(host, span=4)
        self.remote = remote
        self.calls = calls
        self.rate = rate
        self.service = service
        self.timeout_s = timeout_s
        self.extra_args = extra_args or []
        self.dir = Path(tempfile.mkdtemp(prefix="sipp-"))
        self.scenario = self.dir / "scenario.xml"
        self.scenario.write_text(scenario_xml)
        self.stat_file = self.dir / "stats.csv"
        self.msg_file = self.dir / "messages.log"
        self.err_file = self.dir / "errors.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.result: SippResult | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.service}@{self.host}:{self.port}"

    def args(self) -> list[str]:
        a = [self.binary]
        if self.remote:
            a.append(self.remote)
        a += [
            "-sf", str(self.scenario), "-i", self.host, "-p", str(self.port),
            "-mi", self.host, "-mp", str(self.media_port),
            "-m", str(self.calls), "-s", self.service, "-nostdin",
            "-timeout", f"{int(self.timeout_s)}s", "-timeout_error",
            "-trace_stat", "-stf", str(self.stat_file), "-fd", "1",
            "-trace_msg", "-message_file", str(self.msg_file),
            "-trace_err", "-error_file", str(self.err_file),
        ]
        if self.rate is not None:
            a += ["-r", str(self.rate), "-rp", "1000"]
        return a + self.extra_args

    async def start(self) -> Sipp:
        self.proc = await start_process(self.args(), cwd=self.dir)
        # Ready when SIPp holds its UDP port (bind attempts fail), not after a sleep.
        async with asyncio.timeout(10):
            while udp_free(self.host, self.port):
                if self.proc.returncode is not None:
                    raise RuntimeError(f"sipp exited early with {self.proc.returncode}: {self._errors()}")
                await asyncio.sleep(0.02)
        return self

    async def wait(self, timeout: float = 30) -> SippResult:
        assert self.proc is not None, "start() first"
        try:
            async with asyncio.timeout(timeout):
                rc = await self.proc.wait()
        except TimeoutError:
            await self.stop()
            rc = self.proc.returncode if self.proc.returncode is not None else -9
        self.result = self._collect(rc)
        return self.result

    async def stop(self) -> None:
        await stop_process(self.proc, grace=3)

    def _errors(self) -> str:
        return read_log(self.err_file)

    def _collect(self, rc: int) -> SippResult:
        stats: dict[str, str] = {}
        if self.stat_file.exists():
            lines = [ln for ln in self.stat_file.read_text(errors="replace").splitlines() if ln.strip()]
            if len(lines) >= 2:
                head = lines[0].split(";")
                stats = dict(zip(head, lines[-1].split(";"), strict=False))
        msgs = read_log(self.msg_file)
        return SippResult(
            returncode=rc,
            successful=int(stats.get("SuccessfulCall(C)", "0") or 0),
            failed=int(stats.get("FailedCall(C)", "0") or 0),
            stats=stats,
            messages=msgs,
            errors=self._errors(),
        )

    async def __aenter__(self) -> Sipp:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def sipp_uas(kind: str = "answer", *, calls: int = 1, port: int | None = None, timeout_s: float = 30) -> Sipp:
    """A SIPp UAS: `answer` (answers, waits for the caller's BYE), `busy` (486), `no-answer`
    (rings until CANCEL) or `features` (answer, hold, unhold, REFER + NOTIFY, BYE)."""
    return Sipp(UAS_SCENARIOS[kind], port=port, calls=calls, timeout_s=timeout_s)


def sipp_uas_late(answer_after_ms: int, *, timeout_s: float = 30) -> Sipp:
    """A SIPp UAS that rings and answers `answer_after_ms` after the INVITE's 180."""
    return Sipp(UAS_LATE_ANSWER.replace("{answer_after_ms}", str(int(answer_after_ms))), timeout_s=timeout_s)


def sipp_registrar(
    username: str, password: str, *, realm: str = "test.local", expires: int = 60, timeout_s: float = 30
) -> Sipp:
    """A SIPp registrar with digest auth (one registration, then its un-registration)."""
    xml = REGISTRAR.format(realm=realm, username=username, password=password, expires=expires)
    return Sipp(xml, timeout_s=timeout_s)


def sipp_uac(
    target: str, *, service: str = "gateway", calls: int = 1, rate: float | None = None,
    hold_ms: int = 1000, timeout_s: float = 30, play_pcap: str | None = None,
    host: str = "127.0.0.1", user: str = "sipp",
) -> Sipp:
    """A SIPp caller into `target` ("host:port"): INVITE, waits for 200, ACK, talks `hold_ms`, BYE.

    `play_pcap`: a capture to play as RTP after the ACK (a name from SIPp's packaged captures
    such as "dtmf_2833_9.pcap", or a path); the offer then also carries telephone-event/101."""
    xml = (UAC_CALL if user == "sipp" else uac_call(user=user)).replace("{hold_ms}", str(hold_ms))
    play = ""
    if play_pcap:
        path = play_pcap if "/" in play_pcap else sipp_pcap(play_pcap)
        play = f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n'
        xml = xml.replace(_SDP, _SDP_DTMF)
    xml = xml.replace("{play}", play)
    return Sipp(xml, remote=target, service=service, calls=calls, rate=rate, timeout_s=timeout_s, host=host)


def sipp_ringer(
    target: str, *, calls: int = 1, rate: float | None = None, host: str = "127.0.0.1",
    user: str = "sipp", service: str = "gateway", timeout_s: float = 60,
) -> Sipp:
    """A SIPp caller sip:`user`@`host` into `target` whose calls ring until the gateway ends them
    (`uac_ring`); SIPp's `-l` cap is lifted so every call can stay ringing at once."""
    return Sipp(uac_ring(user=user), remote=target, service=service, calls=calls, rate=rate, host=host,
                timeout_s=timeout_s, extra_args=["-l", str(calls)])
