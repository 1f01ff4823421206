"""The worker process's stdout: one writer thread owns it (sip/ipc.py framing).

Threads: `Writer.control` is called from the worker's main thread (pjsua2 callbacks, command
replies) and `Writer.audio` from the pjmedia clock thread; both only put into a bounded queue.
`Writer._run` runs on the "ipc-writer" thread, the only one writing stdout. No pjsua2 here.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from . import ipc

WRITER_QUEUE = 2000


class Writer:
    """Single writer of stdout. Control messages block when the queue is full (never dropped);
    audio frames are dropped (counted) instead, so a slow gateway never stalls the media clock."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._q: queue.Queue[bytes | None] = queue.Queue(WRITER_QUEUE)
        self.audio_dropped = 0
        self._thread = threading.Thread(target=self._run, name="ipc-writer", daemon=True)
        self._thread.start()

    def control(self, data: dict[str, Any]) -> None:
        self._q.put(ipc.encode_control(data))

    def audio(self, call_id: str, pcm: bytes) -> None:
        try:
            self._q.put_nowait(ipc.encode_audio(call_id, pcm))
        except queue.Full:
            self.audio_dropped += 1

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        out = self._stream
        while True:
            item = self._q.get()
            if item is None:
                break
            chunks = [item]
            # Batch what is already queued into one write.
            while len(chunks) < 64:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                chunks.append(nxt)
            try:
                out.write(b"".join(chunks))
                out.flush()
            except (BrokenPipeError, ValueError, OSError):
                os._exit(3)  # the gateway is gone
