"""Broadcast streams inside a worker (main thread): one port per stream, fanned out to the calls
attached to it by pjsua's conference bridge.

Part of `Worker` (process.py). A stream port lives while a call is attached to it (or until
stream_close); a dropped port goes to the graveyard and is released on the main loop (calls.py).
Frames reach a port from the stdin reader thread (`Worker.push_stream`, process.py).
"""

from __future__ import annotations

import sys
from typing import Any

import pjsua2 as pj

from .commands import CommandError
from .pjcalls import CLOCK_RATE, FRAME_MS, StreamPort, WCall


class StreamBridge:
    """Part of `Worker` (process.py): the stream ports and their commands, on the main thread."""

    cfg: dict[str, Any]
    calls: dict[str, WCall]
    streams: dict[str, StreamPort]
    graveyard: list[Any]

    def cmd_stream_attach(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Feed stream `stream_id` to call `call_id` (the port is created on first use). A call
        whose media is not up yet is connected when it is (`connect_streams`)."""
        call = self._call(cmd)
        if call.local_end is not None:
            raise CommandError("invalid-state", "the call is ending")
        sid = str(cmd.get("stream_id") or "")
        if not sid:
            raise CommandError("invalid-params", "stream_id is required")
        return {"calls": len(self.attach_stream(call, sid).calls)}

    def attach_stream(self, call: WCall, sid: str) -> StreamPort:
        """Attach stream `sid` to `call` (cmd_stream_attach, or the dial's `stream` once the call
        is answered: see `answered`), creating the stream's port on first use."""
        port = self.streams.get(sid)
        if port is None:
            port = StreamPort(sid, int(self.cfg.get("audio_queue_frames", 50)))
            fmt = pj.MediaFormatAudio()
            fmt.init(pj.PJMEDIA_FORMAT_PCM, CLOCK_RATE, 1, FRAME_MS * 1000, 16)
            port.createPort(f"stream-{sid[:16]}", fmt)
            self.streams[sid] = port
        port.calls.add(call.call_id)
        call.streams.add(sid)
        if call.audio_media is not None:
            port.startTransmit(call.audio_media)
        return port

    def answered(self, call: WCall) -> None:
        """An outbound call was answered (CONFIRMED, before its event goes out): the stream its
        dial named (`stream`) is attached now, in the worker, with no round trip to the gateway;
        the confirmed event lists the streams the call is attached to (`extra.streams`)."""
        sid = call.stream_on_answer
        if sid is None or call.local_end is not None or call.done:
            return
        call.stream_on_answer = None
        try:
            self.attach_stream(call, sid)
        except pj.Error as e:  # the event then lacks the stream: the gateway attaches it itself
            print(f"worker: stream {sid} not attached to answered call {call.call_id}: {e.reason}",
                  file=sys.stderr, flush=True)

    def cmd_stream_detach(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Stop feeding stream `stream_id` to call `call_id`; a no-op if it is not attached."""
        sid, call_id = str(cmd.get("stream_id") or ""), str(cmd.get("call_id") or "")
        call = self.calls.get(call_id)
        if call is not None:
            call.streams.discard(sid)
        port = self.streams.get(sid)
        if port is None or call_id not in port.calls:
            return {"attached": False}
        port.calls.discard(call_id)
        if call is not None:
            self._unbridge_stream(port, call)
        if not port.calls:
            self._drop_stream(sid)
        return {"attached": True}

    def cmd_stream_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Detach stream `stream_id` from every call and remove its port; a no-op if unknown."""
        sid = str(cmd.get("stream_id") or "")
        port = self.streams.get(sid)
        if port is None:
            return {"closed": False}
        for call_id in list(port.calls):
            call = self.calls.get(call_id)
            if call is not None:
                call.streams.discard(sid)
                self._unbridge_stream(port, call)
        port.calls.clear()
        self._drop_stream(sid)
        return {"closed": True}

    def connect_streams(self, call: WCall, am: Any) -> None:
        """The call's audio is (re)negotiated: its attached streams transmit to its new media."""
        for sid in list(call.streams):
            port = self.streams.get(sid)
            if port is None:
                call.streams.discard(sid)
                continue
            try:
                port.startTransmit(am)
            except pj.Error:
                pass

    def _unbridge_stream(self, port: StreamPort, call: WCall) -> None:
        """Main thread: never touches the media of a call that has ended."""
        am = call.audio_media
        if am is None or call.done:
            return
        try:
            port.stopTransmit(am)
        except pj.Error:
            pass

    def _drop_stream(self, sid: str) -> None:
        port = self.streams.pop(sid, None)
        if port is not None:
            port.close()
            self.graveyard.append(port)  # released on the main loop, outside any callback

    def _leave_streams(self, call: WCall, unbridge: bool) -> None:
        """Detach `call` from all its streams (ports left without calls are removed)."""
        for sid in list(call.streams):
            port = self.streams.get(sid)
            if port is None:
                continue
            port.calls.discard(call.call_id)
            if unbridge:
                self._unbridge_stream(port, call)
            if not port.calls:
                self._drop_stream(sid)
        call.streams.clear()
