"""The bare reference for benchmarks/control_channel.py: a plain `websockets` server answering the
same request mix with nothing behind it (no auth, validation, audit or store).

    python -m benchmarks.control_bare --port 0     # prints {"event": "bare.started", "control": url}

It answers `hello` (a seq), `events.subscribe`, `ping`, `session.list` (the sessions created so
far, newest 50) and `session.create` (a session id), and for each `session.create` sends one
`session.state` event of the gateway's shape to every subscriber with `websockets.broadcast`
(encoded once). Frames are built with json.dumps, as the gateway's codec does.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
import uuid

from websockets.asyncio.server import ServerConnection, broadcast, serve


class BareServer:
    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.last_seq = 0
        self.subscribers: set[ServerConnection] = set()
        self.sessions: list[dict] = []

    def _event(self, kind: str, session_id: str, data: dict) -> str:
        self.last_seq = next(self.seq)
        return json.dumps({"jsonrpc": "2.0", "method": "event", "params": {
            "seq": self.last_seq, "type": kind, "time": time.time(), "session_id": session_id,
            "data": data}}, separators=(",", ":"))

    def answer(self, ws: ServerConnection, method: str, params: dict) -> dict:
        if method == "hello":
            return {"protocol": 1, "principal": "bench", "role": "dispatcher", "seq": self.last_seq}
        if method == "events.subscribe":
            self.subscribers.add(ws)
            return {"seq": self.last_seq}
        if method == "ping":
            return {}
        if method == "session.list":
            return {"sessions": self.sessions[-50:]}
        if method == "session.create":
            sid = str(uuid.uuid4())
            session = {"session_id": sid, "title": params.get("title", ""), "state": "open",
                       "created_at": time.time(), "participants": []}
            self.sessions.append(session)
            broadcast(self.subscribers, self._event("session.state", sid, session))
            return {"session_id": sid}
        return {}

    async def handle(self, ws: ServerConnection) -> None:
        try:
            async for frame in ws:
                msg = json.loads(frame)
                result = self.answer(ws, msg.get("method", ""), msg.get("params") or {})
                if "id" in msg:
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result},
                                             separators=(",", ":")))
        finally:
            self.subscribers.discard(ws)


async def main_async(host: str, port: int) -> None:
    bare = BareServer()
    async with serve(bare.handle, host, port) as server:
        got = server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else port
        print(json.dumps({"event": "bare.started", "control": f"ws://{host}:{got}/"}), flush=True)
        await asyncio.Future()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control_bare")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    try:
        asyncio.run(main_async(a.host, a.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
