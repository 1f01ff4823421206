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
A missing `sipp` binary raises (never skips): the peers are part of the test contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SIPP = "sipp"


def free_udp_port(host: str = "127.0.0.1", span: int = 1) -> int:
    """A UDP port free now (and, if span > 1, the `span - 1` ports after it too)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port + span >= 65535:
            continue
        if all(_udp_free(host, port + k) for k in range(span)):
            return port
    raise RuntimeError("no free UDP port range found")


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _tcp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(host: str = "127.0.0.1", span: int = 10, tcp: bool = True) -> int:
    """A base port whose `span` next ports are free on UDP (and TCP when `tcp`)."""
    for _ in range(100):
        base = free_udp_port(host)
        if base + span >= 65535:
            continue
        ok = all(_udp_free(host, base + k) and (not tcp or _tcp_free(host, base + k)) for k in range(span))
        if ok:
            return base
    raise RuntimeError("no free port block found")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"required test peer {name!r} is not installed (install it; tests never skip)")
    return path


# ---- scenarios ------------------------------------------------------------------------------

_SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

_UAS_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <recv request="INVITE" crlf="true" rrs="true">{action}</recv>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""

_CSEQ_ACTION = """
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseqnum"/>
    </action>
  """

_RINGING = """  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
"""

UAS_ANSWER = (
    _UAS_HEAD.format(name="uas-answer", action="")
    + _RINGING
    + """  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

"""
    + _SDP
    + """    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <timewait milliseconds="500"/>
</scenario>
"""
)

UAS_BUSY = (
    _UAS_HEAD.format(name="uas-busy", action="")
    + """  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <timewait milliseconds="500"/>
</scenario>
"""
)

# Rings and never answers; expects the caller to CANCEL (answers 200 to the CANCEL, 487 to the
# INVITE, takes the ACK).
UAS_NO_ANSWER = (
    _UAS_HEAD.format(name="uas-no-answer", action=_CSEQ_ACTION)
    + _RINGING
    + """  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseqnum] INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <timewait milliseconds="500"/>
</scenario>
"""
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
UAC_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac-call">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Subject: Performance Test
      Content-Type: application/sdp
      Content-Length: [len]

""" + _SDP + """    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      [routes]
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
{play}  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      [routes]
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def _reinvite_ok(direction: str) -> str:
    return """  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

""" + _SDP + "a=" + direction + """
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
"""


# Answers, then expects from the caller: a hold re-INVITE (a=sendonly), an unhold re-INVITE
# (a=sendrecv), a REFER (answered 202, then a NOTIFY carrying "SIP/2.0 200 OK"), and a BYE.
# A missing or different step fails the call (SIPp exit status 1).
UAS_FEATURES = (
    _UAS_HEAD.format(name="uas-features", action="")
    + _RINGING
    + UAS_ANSWER[UAS_ANSWER.index('  <send retrans="500">'):UAS_ANSWER.index('  <recv request="BYE"/>')]
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
  <send>
    <![CDATA[
      SIP/2.0 202 Accepted
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      NOTIFY [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From:[$me]
      To:[$peer]
      [last_Call-ID:]
      CSeq: 1 NOTIFY
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Event: refer
      Subscription-State: terminated;reason=noresource
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      SIP/2.0 200 OK
    ]]>
  </send>
  <recv response="200"/>
"""
    + UAS_ANSWER[UAS_ANSWER.index('  <recv request="BYE"/>'):].replace(
        "</scenario>", '  <Reference variables="hold,unhold,target"/>\n</scenario>')
)

# A registrar that challenges (401, digest), checks the credentials, accepts the REGISTER, then
# accepts the un-REGISTER sent at shutdown. Bad credentials get 403 and fail the call.
REGISTRAR = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="registrar">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="{realm}", nonce="[pid]n[call_number]c0ffee", algorithm=MD5
      Content-Length: 0
    ]]>
  </send>
  <recv request="REGISTER">
    <action>
      <verifyauth assign_to="authvalid" username="{username}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
  <send next="end">
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="good"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires={expires}
      Expires: {expires}
      Content-Length: 0
    ]]>
  </send>
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="end"/>
</scenario>
"""

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
        self.proc = await asyncio.create_subprocess_exec(
            *self.args(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, cwd=self.dir,
        )
        # Ready when SIPp holds its UDP port (bind attempts fail), not after a sleep.
        async with asyncio.timeout(10):
            while _udp_free(self.host, self.port):
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
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                async with asyncio.timeout(3):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()

    def _errors(self) -> str:
        return self.err_file.read_text(errors="replace") if self.err_file.exists() else ""

    def _collect(self, rc: int) -> SippResult:
        stats: dict[str, str] = {}
        if self.stat_file.exists():
            lines = [ln for ln in self.stat_file.read_text(errors="replace").splitlines() if ln.strip()]
            if len(lines) >= 2:
                head = lines[0].split(";")
                stats = dict(zip(head, lines[-1].split(";"), strict=False))
        msgs = self.msg_file.read_text(errors="replace") if self.msg_file.exists() else ""
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


def sipp_registrar(
    username: str, password: str, *, realm: str = "test.local", expires: int = 60, timeout_s: float = 30
) -> Sipp:
    """A SIPp registrar with digest auth (one registration, then its un-registration)."""
    xml = REGISTRAR.format(realm=realm, username=username, password=password, expires=expires)
    return Sipp(xml, timeout_s=timeout_s)


def sipp_uac(
    target: str, *, service: str = "gateway", calls: int = 1, rate: float | None = None,
    hold_ms: int = 1000, timeout_s: float = 30, play_pcap: str | None = None,
) -> Sipp:
    """A SIPp caller into `target` ("host:port"): INVITE, waits for 200, ACK, talks `hold_ms`, BYE.

    `play_pcap`: a capture to play as RTP after the ACK (a name from SIPp's packaged captures
    such as "dtmf_2833_9.pcap", or a path); the offer then also carries telephone-event/101."""
    xml = UAC_CALL.replace("{hold_ms}", str(hold_ms))
    play = ""
    if play_pcap:
        path = play_pcap if "/" in play_pcap else sipp_pcap(play_pcap)
        play = f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n'
        xml = xml.replace(_SDP, _SDP_DTMF)
    xml = xml.replace("{play}", play)
    return Sipp(xml, remote=target, service=service, calls=calls, rate=rate, timeout_s=timeout_s)
