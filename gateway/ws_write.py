"""Synchronous writes of one text frame to a websockets connection, as `websockets.broadcast` does
them: the frame goes to the transport in the caller's turn of the event loop, no task switch.

Used where nothing is queued before the frame (the connection's outbox empty, its writer task not
inside a send): an event fanned out to a parked subscriber, a reply. Anything else (a peer whose
transport already holds `WRITE_HIGH` bytes, a connection closing) returns False and the caller
queues the frame for the writer task, which waits for the transport to drain: the bounds of
gateway/outbox.py and the overflow of gateway/subscription_pump.py still apply.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

WRITE_HIGH = 64 * 1024  # bytes buffered in the transport beyond which frames wait in the outbox


def write_text_now(ws: ServerConnection, data: bytes) -> bool:
    """Write the UTF-8 text frame `data` now; False (nothing written) when it cannot go now."""
    if not frame_text(ws, data):
        return False
    ws.send_data()
    return True


def frame_text(ws: ServerConnection, data: bytes, held: int = 0) -> bool:
    """`write_text_now` but the frame stays with the protocol until `flush(ws)`, so that the frames
    of one commit go out in one write (one send): `held` is how many bytes already wait there."""
    transport = ws.transport
    if (ws.protocol.state is not State.OPEN or ws.send_in_progress is not None or transport is None
            or transport.is_closing() or transport.get_write_buffer_size() + held > WRITE_HIGH):
        return False
    ws.protocol.send_text(data)
    return True


def flush(ws: ServerConnection) -> None:
    """Write what the protocol holds (frames of `frame_text`) to the transport in one write;
    the end of the stream, if the protocol has it, as websockets' own `send_data` does."""
    chunks = ws.protocol.data_to_send()
    transport = ws.transport
    if not chunks or transport is None:
        return
    data = b"".join(chunks)
    if data:
        transport.write(data)
    if b"" in chunks:
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()
