"""Churn call audio ports through a real worker's lifecycle, in a process of its own (a crash must
not take pytest with it): `python -m tests.sip.port_churn --seconds 4`.

Each round creates ports for a few calls (`Worker.ensure_port`), bridges them both ways with the
null sound device so the media clock thread calls them every 20 ms, feeds them audio, ends the
calls (`Worker.call_ended`) and releases the graveyard (`Worker._release_graveyard`). A weakref
marks each port whose refcount reached zero; a frame callback reaching such a port is counted (the
bug: it deallocates the port a second time). Prints one JSON line {"rounds", "ports",
"dying_callbacks"} and exits 0 unless the process crashed first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import weakref
from types import SimpleNamespace
from typing import Any

import sip.worker.calls as calls_module
from sip.worker import pjcalls
from sip.worker.process import Worker
from sip.worker.writer import Writer

CALLS_PER_ROUND = 8
FRAME = bytes(pjcalls.FRAME_BYTES)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.sip.port_churn")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--port", type=int, required=True, help="a free UDP port for the SIP transport")
    args = ap.parse_args(argv)

    dying: set[int] = set()
    hits = [0]

    def reached(port: Any) -> None:  # media clock thread
        if id(port) in dying:
            hits[0] += 1

    class WatchedPort(pjcalls.CallPort):
        def onFrameReceived(self, frame: Any) -> None:
            reached(self)
            super().onFrameReceived(frame)

        def onFrameRequested(self, frame: Any) -> None:
            reached(self)
            super().onFrameRequested(frame)

    pjcalls.use_fast_vector_reader()
    writer = Writer(open(os.devnull, "wb", buffering=0))  # noqa: SIM115 - lives as long as the process
    worker = Worker({"host": "127.0.0.1", "port": args.port, "max_calls": 4, "log_level": 1}, writer)
    worker.start()
    adm = worker.ep.audDevManager()
    capture, playback = adm.getCaptureDevMedia(), adm.getPlaybackDevMedia()
    calls_module.CallPort = WatchedPort  # type: ignore[misc]  # what ensure_port builds, in this process only
    refs: list[weakref.ref[Any]] = []
    rounds = ports = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        calls = []
        for i in range(CALLS_PER_ROUND):
            call = SimpleNamespace(call_id=f"r{rounds}c{i}", port=None, done=False, audio_media=None,
                                   streams=set(), conference=None)
            port = worker.ensure_port(call)  # type: ignore[arg-type]
            port.listening = True
            capture.startTransmit(port)
            port.startTransmit(playback)
            for _ in range(3):
                worker.push_audio(call.call_id, FRAME)
            refs.append(weakref.ref(port, lambda _r, k=id(port): dying.add(k)))
            calls.append(call)
            ports += 1
        del port
        worker.ep.libHandleEvents(5 + rounds % 17)  # the clock thread runs the ports meanwhile
        for call in calls:
            worker.call_ended(call)  # type: ignore[arg-type]
        del call, calls
        worker._release_graveyard()
        refs.clear()
        dying.clear()
        rounds += 1
    sys.stdout.write(json.dumps({"rounds": rounds, "ports": ports, "dying_callbacks": hits[0]}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # no libDestroy: the process is done


if __name__ == "__main__":
    main()
