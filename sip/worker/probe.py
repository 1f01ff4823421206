"""The capacity probe: how many concurrent calls this pjsua2 build allows in one process.

Run as `python -m sip.worker --probe` (its own throw-away process, see sip/worker/__init__.py for why);
the supervisor reads the counts it prints. Single-threaded: everything here runs on the probe
process's main thread (threadCnt=0, mainThreadOnly); nothing else runs in that process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import pjsua2 as pj

from .endpoint import media_address_family, media_config
from .io_budget import IOQUEUE_KEYS, usable_keys
from .pjcalls import PJ_ETOOMANY

PROBE_LIMIT = 64  # calls the probe tries at most when not told (the wheel holds 4)
# The probe's Endpoint, account and calls, held until the process's os._exit: a pjsua2 Call
# destroyed runs pjsua code (pjsua_call_set_user_data, a hangup) that asserts, and so aborts,
# for a call slot past the limit in a build with assertions (the wheel).
_HELD: list[Any] = []


def build_limits() -> dict[str, Any]:
    """The compiled limits of the pjsua2 module in use.

    A module built by scripts/build_pjsua2.sh has them in build.json beside it (PJSUA_MAX_CALLS,
    PJ_IOQUEUE_MAX_HANDLES, ...); the PyPI wheel has none: its figures are io_budget.py's constants
    and the probe's count.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(pj.__file__)), "build.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"source": "wheel", "ioqueue_keys": IOQUEUE_KEYS}
    return {"source": "build", **data}


def caller(max_calls: int, *, bind_media: bool = True, ipv4_only: bool = True, rtp_port: int = 0,
           rtp_port_range: int = 0, worker_media: bool = False) -> tuple[Any, Any]:
    """An Endpoint (threadCnt=0, as in a worker) with a UDP transport on 127.0.0.1 and an account
    to place outgoing calls from: the probe's, and benchmarks/pjsua2_fanout.py's (which can leave
    the media unbound or pjsua's address family choice on, to measure what they cost, or set up
    a worker's media with `worker_media`)."""
    ep = pj.Endpoint()
    ep.libCreate()
    ec = pj.EpConfig()
    ec.uaConfig.threadCnt = 0
    ec.uaConfig.mainThreadOnly = True
    ec.uaConfig.maxCalls = max_calls
    ec.logConfig.level = 0
    ec.logConfig.consoleLevel = 0
    if worker_media:
        media_config(ec)
    ep.libInit(ec)
    ep.audDevManager().setNullDev()
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ac = pj.AccountConfig()
    ac.idUri = "sip:probe@127.0.0.1"
    mt = pj.TransportConfig()
    mt.port = rtp_port
    mt.portRange = rtp_port_range
    if bind_media:
        mt.boundAddress = "127.0.0.1"
    ac.mediaConfig.transportConfig = mt
    if ipv4_only:
        media_address_family(ac, "127.0.0.1")
    acc = pj.Account()
    acc.create(ac, True)
    return ep, acc


def probe_max_calls(report: Any, limit: int = PROBE_LIMIT) -> int:
    """How many concurrent calls this pjsua2 build allows in one process, up to `limit` (see
    sip/worker/__init__.py)."""
    compiled = build_limits().get("max_calls")
    if compiled:
        limit = min(limit, int(compiled))
    usable_keys(int(build_limits()["ioqueue_keys"]))  # raises the descriptor limit: two sockets per call
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    ep, acc = caller(limit)
    _HELD.extend((sink, ep, acc))
    count = 0
    for _ in range(limit):
        c = pj.Call(acc)
        _HELD.append(c)
        try:
            c.makeCall(f"sip:probe@127.0.0.1:{sink_port}", pj.CallOpParam(True))
        except pj.Error as e:
            if e.status != PJ_ETOOMANY:
                print(f"probe: unexpected error {e.status} {e.reason}", file=sys.stderr)
            break
        count += 1
        report(count)
    return count
