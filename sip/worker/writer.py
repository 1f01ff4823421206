"""The worker process's stdout: one writer thread owns it (sip/ipc.py framing).

Threads: `Writer.control` is called from the worker's main thread (pjsua2 callbacks, command
replies) and `Writer.audio` from the pjmedia clock thread; both only append to a bounded deque
under a lock and return at once: neither may ever block the thread that calls it.
`Writer._run` runs on the "ipc-writer" thread, the only one writing stdout. No pjsua2 here.

Control messages go first: each write takes every queued control message before any audio, so
a reply or an event never waits behind a backlog of audio frames (at most behind one write).

Per poll, one write: the main loop holds the writer (`hold`) over each `libHandleEvents` and the
work after it, so the events and replies of one poll (a burst of answers is hundreds) wake the
writer thread once and leave in one write, not one wake-up, GIL hand-over and write each.
A hold never delays a message by more than HOLD_MAX_S: main-thread work that takes long inside
one poll (a drain of 100 commands on a loaded machine; before slot_waits.py, dials that each
waited up to 2 s for a call slot) still lets each reply out as it comes, so the gateway's
liveness check keeps hearing from the worker.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import ipc

AUDIO_QUEUE = 2000  # frames (~40 s of one call); past it new frames are dropped and counted
CONTROL_QUEUE = 20_000  # messages; past it the gateway has not read for minutes: see control()
BATCH = 64  # audio frames joined into one write
CONTROL_BATCH = 2048  # control messages joined into one write (a poll's worth)
HOLD_MAX_S = 0.2  # a held message waits at most this long (see the module's docstring)


class Writer:
    """Single writer of stdout, control before audio; neither `control` nor `audio` blocks."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._cond = threading.Condition(threading.Lock())
        self._control: collections.deque[bytes] = collections.deque()
        self._audio: collections.deque[bytes] = collections.deque()
        self._closing = False
        self._held = False  # main thread: control messages queue without waking the writer
        self._held_at = 0.0  # monotonic start of the current hold
        self.audio_dropped = 0
        self.writes = 0  # writes to stdout (stats: control messages per write)
        self.control_sent = 0
        self._thread = threading.Thread(target=self._run, name="ipc-writer", daemon=True)
        self._thread.start()

    def control(self, data: dict[str, Any]) -> None:
        msg = ipc.encode_control(data)
        with self._cond:
            if len(self._control) >= CONTROL_QUEUE:
                # Decision: the gateway has stopped reading us (it is stuck or gone). Blocking
                # here would freeze pjsua; dropping a reply or an event would desynchronise the
                # gateway. Exit instead: the gateway sees the worker gone and ends its calls.
                os._exit(3)
            self._control.append(msg)
            if not self._held or time.monotonic() - self._held_at > HOLD_MAX_S:
                self._cond.notify()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Main thread: control messages queued inside go out together when it ends (one wake-up)."""
        self._held, self._held_at = True, time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                if self._control:
                    self._cond.notify()

    def audio(self, call_id: str, pcm: bytes) -> None:
        msg = ipc.encode_audio(call_id, pcm)
        with self._cond:
            if len(self._audio) >= AUDIO_QUEUE:
                self.audio_dropped += 1
                return
            self._audio.append(msg)
            self._cond.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (control first), then stop the thread (at most `timeout`)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _take(self) -> list[bytes] | None:
        with self._cond:
            while not self._control and not self._audio:
                if self._closing:
                    return None
                self._cond.wait()
            chunks: list[bytes] = []
            while self._control and len(chunks) < CONTROL_BATCH:
                chunks.append(self._control.popleft())
            self.control_sent += len(chunks)
            while self._audio and len(chunks) < BATCH and not self._control:
                chunks.append(self._audio.popleft())
            return chunks

    def _run(self) -> None:
        out = self._stream
        while (chunks := self._take()) is not None:
            try:
                out.write(b"".join(chunks))
                out.flush()
                self.writes += 1
            except (BrokenPipeError, ValueError, OSError):
                os._exit(3)  # the gateway is gone
