"""The worker's stdout writer (sip/writer.py) over a real pipe: a reader that stops reading must
never block the thread that queues a control message, and control goes ahead of queued audio."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from sip import ipc
from sip.worker.writer import AUDIO_QUEUE, BATCH, Writer

FRAME = bytes(640)  # 20 ms of 16 kHz PCM16LE


def test_control_never_blocks_and_overtakes_queued_audio() -> None:
    rfd, wfd = os.pipe()
    writer = Writer(os.fdopen(wfd, "wb", buffering=0))
    try:
        for _ in range(AUDIO_QUEUE + 500):  # the pipe fills, then the queue; the rest is dropped
            writer.audio("call-1", FRAME)
        assert writer.audio_dropped > 0
        done = threading.Event()

        def reply() -> None:  # as the pjsua main thread would
            writer.control({"type": "reply", "id": 1, "ok": True})
            done.set()

        threading.Thread(target=reply, daemon=True).start()
        assert done.wait(2.0), "control() blocked behind audio nobody reads"
        # Now the gateway reads again: the reply comes before the audio still queued.
        dec = ipc.Decoder()
        audio_before = 0
        found = False
        while not found:
            for msg in dec.feed(os.read(rfd, 65536)):
                if isinstance(msg, ipc.Control):
                    found = True
                    break
                audio_before += 1
        pipe_size = fcntl.fcntl(rfd, 1032)  # F_GETPIPE_SZ
        in_pipe = pipe_size // len(ipc.encode_audio("call-1", FRAME)) + 1
        assert audio_before <= in_pipe + BATCH, audio_before  # the pipe's content and one write
    finally:  # drain the pipe while the writer finishes, then close both ends
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(rfd, 65536), b"")],
                                 daemon=True)
        drain.start()
        writer.close()
        writer._stream.close()
        drain.join(5)
        os.close(rfd)


def test_the_events_of_one_poll_leave_in_one_write() -> None:
    """A burst of answers is hundreds of events in one `libHandleEvents`: they wake the writer
    thread once and leave in one write (Worker.poll_once holds the writer), not one each."""
    from sip.worker.process import Worker

    rfd, wfd = os.pipe()
    writer = Writer(os.fdopen(wfd, "wb", buffering=0))
    worker = Worker.__new__(Worker)  # only the loop step: no pjsua2 endpoint
    worker.writer, worker.conf_trunks = writer, {}

    def event(i: int) -> None:
        worker.emit({"type": "event", "call_id": f"c{i}", "kind": "state", "state": "confirmed"})

    class Poll:  # pjsua's callbacks run inside libHandleEvents (mainThreadOnly)
        def libHandleEvents(self, ms: int) -> int:
            for i in range(300):
                event(i)
                time.sleep(0)  # pjsua's own work between callbacks, without the GIL
            return 300

    worker.ep = Poll()
    worker._after_poll = lambda: [event(1000 + i) for i in range(50)]  # command replies
    try:
        worker.poll_once()
        dec = ipc.Decoder()
        got: list[ipc.Control] = []
        while len(got) < 350:
            got += dec.feed(os.read(rfd, 65536))
        assert [m.data["call_id"] for m in got] == [f"c{i}" for i in [*range(300), *range(1000, 1050)]]
    finally:
        writer.close()
        writer._stream.close()
        os.close(rfd)
    assert (writer.writes, writer.control_sent) == (1, 350)


def test_a_long_hold_still_lets_each_reply_out() -> None:
    """Main-thread work inside one poll can be long (a dial waits up to 2 s for pjsua to free a
    call slot, and a poll drains up to 100 commands): the hold must not keep the replies in, or
    the gateway hears nothing for longer than its liveness deadline and kills a working worker
    (seen in the control fuzz: PJ_ETOOMANY dials, worker killed 'stopped answering')."""
    import select

    from sip.worker import writer as writer_module

    hold_max_s = getattr(writer_module, "HOLD_MAX_S", 0.2)
    rfd, wfd = os.pipe()
    writer = Writer(os.fdopen(wfd, "wb", buffering=0))
    try:
        with writer.hold():
            writer.control({"type": "reply", "id": 1})  # batched with the poll's others
            time.sleep(hold_max_s * 1.5)  # the main thread's long work (pjsua waits, no event)
            writer.control({"type": "reply", "id": 2})
            readable, _, _ = select.select([rfd], [], [], 10)
            assert readable, "nothing left the worker while its main loop held the writer"
            dec = ipc.Decoder()
            got: list[ipc.Control] = []
            while len(got) < 2:
                got += dec.feed(os.read(rfd, 65536))
            assert [m.data["id"] for m in got] == [1, 2]
    finally:
        writer.close()
        writer._stream.close()
        os.close(rfd)
