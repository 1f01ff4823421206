"""How long pjsua2's makeCall takes, call after call, in one process (outgoing media initialisation).

    python -m benchmarks.pjsua2_fanout --calls 1000 [--bind-media] [--ipv4-only]
    python -m benchmarks.pjsua2_fanout --calls 500 --answered 127.0.0.1:5070 [--sipp-pid PID]

`--answered HOST:PORT` is bare pjsua2 doing what a broadcast's worker does, without the gateway:
one process (media set up as a worker's: 16 kHz clock, no VAD, null sound device, media bound to
127.0.0.1, IPv4 only) dials `sip:spk<i>@HOST:PORT` for i < calls, every INVITE at once and
sendonly like a paging call, and polls `libHandleEvents(10)` until every call is CONFIRMED (or
`--timeout`). It prints the time from the first makeCall to the last CONFIRMED, its own CPU over
that time, and that of `--sipp-pid` (the answering SIPp) when given; with `--hangup` it then ends
every call (BYE) so that the UAS counts them: benchmarks/broadcast.py `--bare` runs it against a
SIPp UAS of its own next to each gateway fan-out and reads SIPp's count.

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


def _cpu_s(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def answered(args: argparse.Namespace) -> None:
    usable_keys(int(build_limits()["ioqueue_keys"]))
    ep, acc = caller(args.calls, rtp_port=args.rtp_port, rtp_port_range=4 * args.calls, worker_media=True)
    confirmed: dict[int, float] = {}
    ended: set[int] = set()

    class Paging(pj.Call):
        def onCallState(self, prm: object) -> None:
            state = self.getInfo().state
            if state == pj.PJSIP_INV_STATE_CONFIRMED:
                confirmed.setdefault(self.getId(), time.monotonic())
            elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
                ended.add(id(self))

    calls = []
    cpu0, sipp0 = _cpu_s(), (_cpu_s(args.sipp_pid) if args.sipp_pid else 0.0)
    t0 = time.monotonic()
    for i in range(args.calls):
        c = Paging(acc)
        calls.append(c)
        prm = pj.CallOpParam(True)
        dirs = pj.IntVector()
        dirs.append(pj.PJMEDIA_DIR_ENCODING)  # sendonly, as a broadcast's paging call
        prm.opt.mediaDir = dirs
        prm.opt.flag |= pj.PJSUA_CALL_SET_MEDIA_DIR
        c.makeCall(f"sip:spk{i}@{args.answered}", prm)
    placed = time.monotonic()
    while len(confirmed) < args.calls and time.monotonic() - t0 < args.timeout:
        ep.libHandleEvents(10)
    t1 = max(confirmed.values(), default=time.monotonic())
    wall = time.monotonic() - t0
    up = sorted(t - t0 for t in confirmed.values())
    print(json.dumps({
        "build": build_limits().get("source"), "calls": args.calls, "confirmed": len(confirmed),
        "placed_s": round(placed - t0, 3), "all_confirmed_s": round(t1 - t0, 3),
        "confirmed_s_p50": round(statistics.median(up), 3) if up else None,
        "cpu_cores": round((_cpu_s() - cpu0) / wall, 3),
        "sipp_cpu_cores": round((_cpu_s(args.sipp_pid) - sipp0) / wall, 3) if args.sipp_pid else None,
    }), flush=True)
    if args.hangup:  # BYE every call and wait for the answers, so that SIPp counts its calls
        ep.hangupAllCalls()
        end = time.monotonic() + 15
        while len(ended) < len(calls) and time.monotonic() < end:
            ep.libHandleEvents(10)
        t_end = time.monotonic() + 0.5  # the last 200s to our BYEs
        while time.monotonic() < t_end:
            ep.libHandleEvents(10)
    os._exit(0)  # no teardown to measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--answered", metavar="HOST:PORT", help="dial a UAS that answers; time to all CONFIRMED")
    ap.add_argument("--sipp-pid", type=int, default=0, help="with --answered: report this process's CPU too")
    ap.add_argument("--timeout", type=float, default=60.0, help="with --answered: give up after this long")
    ap.add_argument("--hangup", action="store_true", help="with --answered: then hang every call up (BYE) "
                    "and wait for the answers, so that the UAS counts its calls")
    ap.add_argument("--bind-media", action="store_true", help="bind the media transport to 127.0.0.1")
    ap.add_argument("--ipv4-only", action="store_true", help="ipv6Use = PJSUA_IPV6_DISABLED (the worker's)")
    ap.add_argument("--rtp-port", type=int, default=40000, help="first RTP port (a range is set, as in the trial)")
    args = ap.parse_args()
    if args.answered:
        return answered(args)
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
