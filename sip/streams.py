"""Streams: one audio stream fanned out to many calls inside each worker.

The bookkeeping of attach_stream/detach_stream/close_stream/send_stream: which workers hold calls
attached to a stream, and which streams each call is attached to. `StreamFanout` is a part of
SipSupervisor (sip/supervisor.py), which provides the state annotated on the class.
"""

from __future__ import annotations

import asyncio

import structlog

from . import ipc
from .errors import SipUnavailable
from .worker_process import AUDIO_WRITE_LIMIT, Worker

log = structlog.get_logger("sip.supervisor")  # the logger name the supervisor's events always had


def check_stream_id(stream_id: str) -> None:
    if not isinstance(stream_id, str) or not 0 < len(stream_id) < 256 or not stream_id.isascii():
        raise ValueError(f"stream_id must be 1..255 ASCII characters, got {stream_id!r}")


class StreamFanout:
    """Stream attach/detach/close/send and their bookkeeping (a part of SipSupervisor)."""

    _workers: dict[int, Worker]
    _call_worker: dict[str, int]
    _streams: dict[str, dict[int, set[str]]]
    _call_streams: dict[str, set[str]]
    stream_frames_dropped: int
    # from WorkerProcesses (sip/worker_process.py): _command, _worker_for

    async def attach_stream(self, stream_id: str, call_id: str) -> None:
        """Feed stream `stream_id` (see send_stream) to call `call_id`. In the call's worker, the
        stream's audio port is created on first use and bridged to the call's audio (now, or when
        its media comes up); one port feeds every call of that worker attached to it. Detached
        automatically when the call ends."""
        check_stream_id(stream_id)
        w = self._worker_for(call_id)
        reader = w.reader
        await self._command(w, {"cmd": "stream_attach", "stream_id": stream_id, "call_id": call_id})
        if self._call_worker.get(call_id) != w.index or w.reader is not reader or not w.up:
            return  # the call ended (or its worker died) while the reply was on its way
        self._link(stream_id, w.index, call_id)

    def _link(self, stream_id: str, index: int, call_id: str) -> None:
        """Call `call_id` of worker `index` is attached to `stream_id` there (by attach_stream, or
        by the worker itself when a call dialled with `stream` was answered)."""
        self._streams.setdefault(stream_id, {}).setdefault(index, set()).add(call_id)
        self._call_streams.setdefault(call_id, set()).add(stream_id)

    async def detach_stream(self, stream_id: str, call_id: str) -> None:
        """Stop feeding stream `stream_id` to call `call_id` (no-op if it is not attached)."""
        idx = self._call_worker.get(call_id)
        self._unlink(stream_id, call_id)
        w = self._workers.get(idx) if idx is not None else None
        if w is None or not w.up:
            return  # no call (ended: the worker detached it) or no worker
        await self._command(w, {"cmd": "stream_detach", "stream_id": stream_id, "call_id": call_id})

    async def close_stream(self, stream_id: str) -> None:
        """Detach stream `stream_id` from every call and remove its port in every worker."""
        self._streams.pop(stream_id, None)
        for cids in self._call_streams.values():
            cids.discard(stream_id)
        workers = [w for w in self._workers.values() if w.up]
        results = await asyncio.gather(
            *(self._command(w, {"cmd": "stream_close", "stream_id": stream_id}) for w in workers),
            return_exceptions=True)
        for w, r in zip(workers, results):
            # A worker that is gone took its ports with it; after any other failure the worker
            # still removes the port when the last call attached to it ends.
            if isinstance(r, BaseException) and not isinstance(r, SipUnavailable):
                log.warning("sip.stream.close_failed", worker=w.index, stream_id=stream_id, error=repr(r))

    def send_stream(self, stream_id: str, pcm: bytes) -> None:
        """Queue 20 ms of 16 kHz PCM16LE towards every call attached to `stream_id`; non-blocking.
        One message per worker holding such calls, whatever their number. A worker whose pipe is
        backed up (or that is down) misses the frame (counted in stream_frames_dropped)."""
        per_worker = self._streams.get(stream_id)
        if not per_worker:
            return
        msg = None
        for idx in per_worker:
            w = self._workers.get(idx)
            if w is None or not w.up or w.proc is None or w.proc.stdin is None or w.proc.stdin.is_closing():
                self.stream_frames_dropped += 1
                continue
            if w.proc.stdin.transport.get_write_buffer_size() > AUDIO_WRITE_LIMIT:
                w.audio_dropped += 1
                self.stream_frames_dropped += 1
                continue
            if msg is None:
                msg = ipc.encode_stream(stream_id, pcm)
            w.proc.stdin.write(msg)

    def stream_workers(self, stream_id: str) -> dict[int, int]:
        """Worker index -> number of calls attached to `stream_id` there (tests, stats)."""
        return {i: len(c) for i, c in self._streams.get(stream_id, {}).items()}

    def _unlink(self, stream_id: str, call_id: str) -> None:
        sids = self._call_streams.get(call_id)
        if sids is not None:
            sids.discard(stream_id)
            if not sids:
                del self._call_streams[call_id]
        per_worker = self._streams.get(stream_id)
        if per_worker is None:
            return
        for idx in [i for i, cids in per_worker.items() if call_id in cids]:
            per_worker[idx].discard(call_id)
            if not per_worker[idx]:
                del per_worker[idx]
        if not per_worker:
            del self._streams[stream_id]

    def _unlink_call_streams(self, call_id: str) -> None:
        for sid in list(self._call_streams.get(call_id, ())):
            self._unlink(sid, call_id)
        self._call_streams.pop(call_id, None)

    def _unlink_stream_worker(self, stream_id: str, index: int) -> None:
        per_worker = self._streams.get(stream_id)
        if per_worker is None or index not in per_worker:
            return
        for call_id in per_worker.pop(index):
            sids = self._call_streams.get(call_id)
            if sids is not None:
                sids.discard(stream_id)
                if not sids:
                    del self._call_streams[call_id]
        if not per_worker:
            del self._streams[stream_id]
