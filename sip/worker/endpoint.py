"""A worker's pjsua2 Endpoint: library init, the SIP transport, codecs and accounts (main thread).

Part of `Worker` (process.py); the Endpoint runs with threadCnt=0 and mainThreadOnly, so every
call here and every callback it leads to runs on the worker's main thread.
"""

from __future__ import annotations

import sys
from typing import Any

import pjsua2 as pj

from .commands import CommandError
from .pjcalls import CLOCK_RATE, FRAME_MS, WAccount, WLogWriter


def _no_nat_rewrites(ac: Any) -> None:
    """Our addresses are what we bound: pjsua rewrites nothing in SDP, Via or Contact."""
    ac.natConfig.sdpNatRewriteUse = 0
    ac.natConfig.viaRewriteUse = 0
    ac.natConfig.contactRewriteUse = 0
    ac.natConfig.sipOutboundUse = 0


def media_address_family(ac: Any, host: str) -> None:
    """The media of `ac` uses the address family of `host`, the address we bind.

    Left at pjsua's default (IPv6 enabled, IPv4 preferred), every outgoing call asks
    pj_gethostip(AF_INET6) which address family its SDP offer should use: a getaddrinfo of the
    machine's hostname, which /etc/hosts rarely answers for IPv6, so a DNS query per call. A lost
    reply costs the resolver's retry timeout (5 s by default in resolv.conf) inside media
    initialisation, on the one thread that runs every call of the worker (docs/design.md,
    "pjsua2 built from source").
    """
    ac.mediaConfig.ipv6Use = pj.PJSUA_IPV6_ENABLED_USE_IPV6_ONLY if ":" in host else pj.PJSUA_IPV6_DISABLED


def media_config(ec: Any, jitter_buffer: dict[str, int] | None = None) -> None:
    """A worker's media: 16 kHz mono 20 ms frames, no VAD (RTP flows in silence too), no echo
    canceller (also what benchmarks/pjsua2_fanout.py --answered sets up, through probe.caller);
    every call's jitter buffer as `jitter_buffer` says (sip.jb_*, ms, -1: pjsua's default; the
    discard algorithm stays pjsua's, progressive: 2.15.1's Python binding cannot set that enum).
    docs/design.md, "Jitter buffer"."""
    ec.medConfig.clockRate = CLOCK_RATE
    ec.medConfig.sndClockRate = CLOCK_RATE
    ec.medConfig.channelCount = 1
    ec.medConfig.audioFramePtime = FRAME_MS
    ec.medConfig.noVad = True
    ec.medConfig.ecTailLen = 0
    jb = jitter_buffer or {}
    ec.medConfig.jbInit = int(jb.get("init_ms", -1))
    ec.medConfig.jbMinPre = int(jb.get("min_prefetch_ms", -1))
    ec.medConfig.jbMaxPre = int(jb.get("max_prefetch_ms", -1))
    ec.medConfig.jbMax = int(jb.get("max_ms", -1))


class EndpointSetup:
    """Part of `Worker` (process.py): the Endpoint and its accounts, on the main thread."""

    cfg: dict[str, Any]
    ep: Any
    acc: WAccount | None
    refusal_acc: WAccount | None
    identities: dict[tuple[str | None, str | None], WAccount]

    def start(self) -> None:
        cfg = self.cfg
        ep = self.ep
        ep.libCreate()
        ec = pj.EpConfig()
        ec.uaConfig.threadCnt = 0
        ec.uaConfig.mainThreadOnly = True
        ec.uaConfig.maxCalls = int(cfg.get("max_calls") or 4)
        ec.uaConfig.userAgent = "dispatch-gateway"
        ec.logConfig.level = int(cfg.get("log_level", 2))
        ec.logConfig.consoleLevel = int(cfg.get("log_level", 2))
        # pjsua's lines go through our writer, within a byte budget (log_budget.py)
        self.log_writer = WLogWriter(sys.stderr.buffer)
        ec.logConfig.writer = self.log_writer
        media_config(ec, cfg.get("jitter_buffer"))
        ep.libInit(ec)
        ep.audDevManager().setNullDev()
        tc = pj.TransportConfig()
        tc.port = int(cfg["port"])
        tc.boundAddress = cfg["host"]
        tc.publicAddress = cfg["host"]  # Via/Contact: this worker's own address
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        ep.libStart()
        self._set_codecs(cfg.get("codecs") or ["PCMU", "PCMA", "G722"])
        self.acc = self._make_account(None, None, registration=cfg.get("registration"))
        self.refusal_acc = self._make_refusal_account()
        self.acc.setDefault()

    def _set_codecs(self, wanted: list[str]) -> None:
        wanted_u = [w.upper() for w in wanted]
        for ci in self.ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            prio = 0
            if name in wanted_u:
                prio = 250 - wanted_u.index(name)
            self.ep.codecSetPriority(ci.codecId, prio)

    def _media_transport(self) -> Any:
        t = pj.TransportConfig()
        t.port = int(self.cfg.get("rtp_port", 0))
        t.portRange = int(self.cfg.get("rtp_port_range", 0))
        t.boundAddress = self.cfg["host"]
        t.publicAddress = self.cfg["host"]
        return t

    def _make_account(
        self, from_uri: str | None, display_name: str | None, registration: dict[str, Any] | None = None
    ) -> WAccount:
        cfg = self.cfg
        host = cfg.get("public_host") or cfg["host"]
        port = cfg.get("public_port") or cfg["port"]
        display = display_name if display_name is not None else cfg.get("display_name") or ""
        uri = from_uri or f"sip:{cfg.get('user', 'gateway')}@{host}:{port}"
        if registration:
            reg_host = registration["registrar"].split(":", 1)[1] if ":" in registration["registrar"] else registration["registrar"]
            uri = from_uri or f"sip:{registration['username']}@{reg_host}"
        ac = pj.AccountConfig()
        ac.idUri = f'"{display}" <{uri}>' if display else uri
        ac.mediaConfig.transportConfig = self._media_transport()
        media_address_family(ac, cfg["host"])
        _no_nat_rewrites(ac)
        ac.sipConfig.contactForced = f"<sip:{cfg.get('user', 'gateway')}@{cfg['host']}:{cfg['port']}>"
        if registration:
            ac.regConfig.registrarUri = registration["registrar"]
            ac.regConfig.timeoutSec = int(registration.get("expires", 300))
            ac.regConfig.registerOnAdd = True
            ac.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", registration.get("realm", "*"), registration["username"], 0,
                                registration["password"])
            )
        acc = WAccount(self)
        acc.create(ac, from_uri is None and display_name is None)
        return acc

    def _make_refusal_account(self) -> WAccount:
        """Where admission (calls.py) sends INVITEs it refuses: a loopback media transport, so
        pjsua opens no socket for them; never registers, never dials."""
        cfg = self.cfg
        ac = pj.AccountConfig()
        ac.idUri = f"sip:refused@{cfg['host']}:{cfg['port']}"
        ac.mediaConfig.useLoopMedTp = True
        _no_nat_rewrites(ac)
        ac.sipConfig.contactForced = f"<sip:refused@{cfg['host']}:{cfg['port']}>"
        acc = WAccount(self)
        acc.create(ac, False)
        return acc

    def _account_for(self, from_uri: str | None, display_name: str | None) -> WAccount:
        assert self.acc is not None
        if from_uri is None and display_name is None:
            return self.acc
        key = (from_uri, display_name)
        acc = self.identities.get(key)
        if acc is None:
            if len(self.identities) >= 5:  # PJSUA_MAX_ACC is 8; keep room for the main account
                raise CommandError("invalid-params", "too many distinct caller identities in this worker")
            acc = self._make_account(from_uri, display_name)
            self.identities[key] = acc
        return acc
