"""Synchronous writes of one text frame to a websockets connection, as `websockets.broadcast` does
them: the frame goes to the transport in the caller's turn of the event loop, no task switch.

Used where nothing is queued before the frame (the connection's outbox empty, its writer task not
inside a send): an event fanned out to a parked subscriber, a reply. Anything else (a peer whose
transport already holds `WRITE_HIGH` bytes, a connection closing) returns False and the caller
queues the frame for the writer task, which waits for the transport to drain: the bounds of
gateway/outbox.py and the overflow of gateway/subscription_pump.py still apply. The frames of
a commit's events fanned out to every parked subscriber are built once for all of them
(`text_frame`, `write_frame_now`): per subscriber only the checks and the write are left.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
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


def text_frame(data: bytes) -> bytes:
    """The wire bytes of one unfragmented text frame from the server: the same for every
    connection without extensions (a server's frames are not masked, and `compression=None`),
    so a frame fanned out to N subscribers is built once (`write_frame_now`)."""
    return Frame(Opcode.TEXT, data).serialize(mask=False, extensions=[])


def write_frame_now(ws: ServerConnection, wire: bytes) -> bool:
    """Write whole frames built by `text_frame` to the transport now, past the protocol's framing,
    when that is what the protocol would have written: the connection open, no extension, nothing
    of its own waiting to be written, no fragmented message under way; False (nothing written)
    otherwise, or when the transport holds `WRITE_HIGH` bytes, as `write_text_now`."""
    protocol, transport = ws.protocol, ws.transport
    if (protocol.state is not State.OPEN or protocol.writes or protocol.extensions
            or protocol.expect_continuation_frame or ws.send_in_progress is not None or transport is None
            or transport.is_closing() or transport.get_write_buffer_size() > WRITE_HIGH):
        return False
    transport.write(wire)
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
