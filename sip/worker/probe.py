"""The capacity probe: how many concurrent calls this pjsua2 build allows in one process.

Run as `python -m sip.worker --probe` (its own throw-away process, see sip/worker/__init__.py for why);
the supervisor reads the counts it prints. Single-threaded: everything here runs on the probe
process's main thread (threadCnt=0, mainThreadOnly); nothing else runs in that process.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import pjsua2 as pj

from .pjcalls import PJ_ETOOMANY


def probe_max_calls(report: Any, limit: int = 64) -> int:
    """How many concurrent calls this pjsua2 build allows in one process (see sip/worker/__init__.py)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    ep = pj.Endpoint()
    ep.libCreate()
    ec = pj.EpConfig()
    ec.uaConfig.threadCnt = 0
    ec.uaConfig.mainThreadOnly = True
    ec.uaConfig.maxCalls = limit
    ec.logConfig.level = 0
    ec.logConfig.consoleLevel = 0
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
    mt.boundAddress = "127.0.0.1"
    ac.mediaConfig.transportConfig = mt
    acc = pj.Account()
    acc.create(ac, True)
    calls = []
    count = 0
    for _ in range(limit):
        c = pj.Call(acc)
        try:
            c.makeCall(f"sip:probe@127.0.0.1:{sink_port}", pj.CallOpParam(True))
        except pj.Error as e:
            if e.status != PJ_ETOOMANY:
                print(f"probe: unexpected error {e.status} {e.reason}", file=sys.stderr)
            break
        calls.append(c)
        count += 1
        report(count)
    return count
