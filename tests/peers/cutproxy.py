"""A loopback TCP proxy that loses the connection after N bytes: a console's link dropping
mid-command, at a byte the test chooses.

    async with CutProxy("127.0.0.1", gateway_port) as proxy:
        ws = await websockets.connect(f"ws://127.0.0.1:{proxy.port}/v1/control")
        ...                               # hello, subscribe: forwarded as they are
        proxy.arm(down=2_000)             # from now on: cut once 2,000 more bytes reached the client
        await ws.send(request)
        await proxy.cut.wait()

`heal()` lets new connections through again after a cut (a link that comes back: the client
reconnects through the same proxy). `arm(up=N)` counts client -> server bytes instead (N smaller than the request: the request is cut
in half; exactly its length: it arrives whole and the link drops at once). The cut aborts both
sockets (RST), as a dead link or a killed console does; bytes past the limit never reach the
other side.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 65536


def ws_frame_len(payload: bytes | str) -> int:
    """Bytes a client sends for one unfragmented, masked, uncompressed WebSocket frame."""
    n = len(payload.encode() if isinstance(payload, str) else payload)
    return n + 2 + 4 + (0 if n <= 125 else 2 if n <= 0xFFFF else 8)


class CutProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cut = asyncio.Event()
        self._limits: dict[str, int | None] = {"up": None, "down": None}
        self._server: asyncio.Server | None = None
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted so far (a client's reconnect attempts among them)

    def arm(self, *, up: int | None = None, down: int | None = None) -> None:
        """Cut once `up` more bytes went to the server, or `down` more to the client."""
        self._limits = {"up": up, "down": down}

    def heal(self) -> None:
        """After a cut: new connections are forwarded again (the cut ones stay cut)."""
        self._links = [(a, b) for a, b in self._links if not (a.transport.is_closing() and b.transport.is_closing())]
        self._limits = {"up": None, "down": None}
        self.cut.clear()

    async def start(self) -> CutProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> CutProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.accepted += 1
        sreader, swriter = await asyncio.open_connection(*self.target)
        self._links.append((cwriter, swriter))
        for name, src, dst in (("up", creader, swriter), ("down", sreader, cwriter)):
            task = asyncio.get_running_loop().create_task(self._pump(name, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, name: str, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while not self.cut.is_set():
                data = await src.read(CHUNK)
                if not data or self.cut.is_set():
                    break
                left = self._limits[name]
                if left is not None and len(data) >= left:
                    dst.write(data[:left])
                    with contextlib.suppress(ConnectionError):
                        await dst.drain()
                    self.cut.set()
                    break
                if left is not None:
                    self._limits[name] = left - len(data)
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            self._abort_all()

    def _abort_all(self) -> None:
        for a, b in self._links:
            for w in (a, b):
                if not w.transport.is_closing():
                    w.transport.abort()
