"""A debug trace of a worker's receive side: each call's jitter buffer and the worker's threads'
scheduling delay, sampled on the main loop (off by default: `sip.media_trace_ms` = 0).

Part of `Worker` (process.py). Every `media_trace_ms` the main loop sends the gateway one
`media_trace` message (logged as `sip.media_trace`, sip/worker_process.py): the time
(CLOCK_REALTIME ns, the clock benchmarks/conferences.py stamps its beeps with), and
- for each call whose stream has received RTP: its jitter buffer (pjsua2 `StreamStat.jbuf`:
  frames held now and what they add in ms, prefetch, burst level, the min/max prefetch allowed,
  and the lost / discarded / empty counters since the stream started), and the RTP packets received;
- the frames waiting in each non-empty playout queue the gateway feeds (a broadcast's stream, a
  console's port: 20 ms each, so the delay they add);
- for each thread of the worker: CPU time run and time spent runnable but waiting for a core, in
  ns since it started (/proc/self/task/<tid>/schedstat), by thread name.
Cost when on: one `getStreamStat` and `getStreamInfo` per traced call and a few /proc reads per interval (about
0.1 ms for a handful of calls); when off, one comparison per poll.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pjsua2 as pj

from .pjcalls import CallPort, StreamPort, WCall

JBUF_FIELDS = ("size", "prefetch", "burst", "minPrefetch", "maxPrefetch", "lost", "discard", "empty")


def thread_schedstat() -> dict[str, list[int]]:
    """Thread name (with its id) -> [run ns, wait-for-a-core ns, timeslices] of this process."""
    out: dict[str, list[int]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[f"{name}/{tid}"] = [int(x) for x in f.read().split()[:3]]
        except (OSError, ValueError):
            continue
    return out


def jbuf_sample(call: WCall) -> dict[str, Any] | None:
    """The jitter buffer of `call`'s audio stream, None without one or before its first packet.
    Its frames are the codec's (10 ms for G.711 and G.722, whatever the packets' ptime):
    `held_ms` is what it holds in ms, the delay it adds now."""
    if call.done or call.audio_index < 0:
        return None
    try:
        st = call.getStreamStat(call.audio_index)
        rx = int(st.rtcp.rxStat.pkt)
        frame_ms = int(call.getStreamInfo(call.audio_index).audCodecParam.info.frameLen) if rx else 0
    except pj.Error:
        return None
    if not rx:
        return None
    jb = {k: int(getattr(st.jbuf, k)) for k in JBUF_FIELDS}
    return {"uri": call.remote_uri, "rx": rx, "frame_ms": frame_ms, "held_ms": jb["size"] * frame_ms, **jb}


class MediaTrace:
    """Part of `Worker` (process.py): the `media_trace` message, on the main thread."""

    cfg: dict[str, Any]
    calls: dict[str, WCall]
    streams: dict[str, StreamPort]
    ports: dict[str, CallPort]
    trace_at: float

    def trace_media(self, now: float) -> None:
        """Main loop: one `media_trace` message every `media_trace_ms` (when it is > 0)."""
        every = int(self.cfg.get("media_trace_ms") or 0)
        if not every or now < self.trace_at:
            return
        self.trace_at = now + every / 1000
        calls = {cid: s for cid, call in self.calls.items() if (s := jbuf_sample(call)) is not None}
        # frames waiting in the playout queues fed by the gateway (a stream's, a console's): 20 ms each
        queued = {k: len(p.playout) for k, p in [*self.streams.items(), *self.ports.items()] if p.playout}
        self.emit({"type": "media_trace", "t_ns": time.time_ns(), "calls": calls, "playout": queued,
                   "threads": thread_schedstat()})
