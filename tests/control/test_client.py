"""The Python client across network cuts, against a scripted `websockets` server on loopback.

The server answers the protocol by hand so a test can cut the connection at an exact point of the
client's reconnect sequence (hello, then the resubscribe).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway.client import GatewayClient


class ScriptedGateway:
    """hello and events.subscribe answered by hand; `cut_subscribes` subscribes are answered by
    aborting the TCP connection instead (a network cut, no close handshake)."""

    def __init__(self, cut_subscribes: int) -> None:
        self.cut_subscribes = cut_subscribes
        self.subscribes: list[dict] = []  # params of every events.subscribe received
        self.answered = asyncio.Event()  # an events.subscribe was answered
        self.connections = 0

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionClosed):
            await self._answer(ws)

    async def _answer(self, ws: ServerConnection) -> None:
        async for text in ws:
            msg = json.loads(text)
            if msg["method"] == "hello":
                result: dict = {"principal": "olga", "role": "observer", "gateway_id": "g",
                                "seq": 7, "protocol": 1}
            elif msg["method"] == "events.subscribe":
                self.subscribes.append(msg.get("params") or {})
                if self.cut_subscribes > 0:
                    self.cut_subscribes -= 1
                    ws.transport.abort()
                    return
                result = {"last_seq": 7}
                self.answered.set()
            else:
                result = {}
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}))


async def test_a_cut_during_the_resubscribe_is_retried_not_hung() -> None:
    """The reconnect sequence waited forever for the resubscribe's reply when the connection was
    cut right there (the pending request was failed only after the reconnect returned)."""
    script = ScriptedGateway(cut_subscribes=0)
    async with serve(script.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await GatewayClient.connect(f"ws://127.0.0.1:{port}/v1/control", "t",
                                             backoff=(0.02, 0.1), call_timeout=5)
        try:
            await client.subscribe(5)
            script.answered.clear()
            script.cut_subscribes = 2  # the next two resubscribes are cut
            assert client._ws is not None
            client._ws.transport.abort()
            async with asyncio.timeout(10):
                await script.answered.wait()
            assert await client.call("ping") == {}  # usable on the new connection
            assert script.connections == 4  # first, two cut during the resubscribe, the good one
            assert [s.get("since_seq") for s in script.subscribes] == [5, 5, 5, 5]
            assert client.connected
        finally:
            await client.close()
