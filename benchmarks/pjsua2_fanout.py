"""How long pjsua2's makeCall takes, call after call, in one process (outgoing media initialisation).

    python -m benchmarks.pjsua2_fanout --calls 1000 [--bind-media] [--ipv4-only]

Places `--calls` outgoing calls from one Endpoint (threadCnt=0, as a worker) towards a UDP socket
that never answers and prints the distribution of makeCall's duration: pjsua creates the call's
RTP/RTCP sockets (and decides their address) inside it, so a stall in media initialisation is a
stall of makeCall. Without `--bind-media` the media transport has no bound address and pjsua asks
pj_gethostip() per call (as in the trial recorded in ../shared/FACTS.md); `--bind-media` binds
127.0.0.1 and `--ipv4-only` sets the account's ipv6Use as the worker does
(sip/worker/endpoint.py: media_address_family). docs/design.md, "pjsua2 built from source".
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time

import sip.worker  # noqa: F401  (chooses the pjsua2 build: sip/worker/pjsua2_choice.py)
import pjsua2 as pj  # noqa: E402  isort: skip

from sip.worker.io_budget import usable_keys  # noqa: E402
from sip.worker.probe import build_limits, caller  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--bind-media", action="store_true", help="bind the media transport to 127.0.0.1")
    ap.add_argument("--ipv4-only", action="store_true", help="ipv6Use = PJSUA_IPV6_DISABLED (the worker's)")
    ap.add_argument("--rtp-port", type=int, default=40000, help="first RTP port (a range is set, as in the trial)")
    args = ap.parse_args()
    limits = build_limits()
    usable_keys(int(limits["ioqueue_keys"]))  # raise RLIMIT_NOFILE as a worker does
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    ep, acc = caller(args.calls, bind_media=args.bind_media, ipv4_only=args.ipv4_only,
                     rtp_port=args.rtp_port, rtp_port_range=4 * args.calls)
    held = []
    took = []
    uri = f"sip:sink@127.0.0.1:{sink.getsockname()[1]}"
    for _ in range(args.calls):
        c = pj.Call(acc)
        held.append(c)
        t = time.perf_counter()
        c.makeCall(uri, pj.CallOpParam(True))
        took.append(time.perf_counter() - t)
        ep.libHandleEvents(0)
    took_ms = sorted(x * 1000 for x in took)
    print(json.dumps({
        "build": limits.get("source"), "calls": len(took), "bind_media": args.bind_media,
        "ipv4_only": args.ipv4_only, "p50_ms": round(statistics.median(took_ms), 3),
        "p99_ms": round(took_ms[int(0.99 * (len(took_ms) - 1))], 3), "max_ms": round(took_ms[-1], 1),
        "over_1s": sum(1 for x in took_ms if x > 1000),
    }), flush=True)
    os._exit(0)  # the calls are still ringing a sink: no teardown to measure


if __name__ == "__main__":
    main()
