"""The bare reference for benchmarks/control_channel.py: a plain `websockets` server answering the
same request mix with nothing behind it (no auth, validation, audit or store).

    python -m benchmarks.control_bare --port 0     # prints {"event": "bare.started", "control": url}

It answers `hello` (a seq), `events.subscribe`, `ping`, `session.list` and `session.create`
with what the gateway answers (the same replies, so the same bytes on the wire): a session is the
gateway's six public fields, `session.create` answers it, `session.list` answers the newest 1000
sessions oldest first (the gateway's limit; its text encoded once between creates, as the
gateway keeps its own), and each `session.create` sends one `session.state` event of the
gateway's shape to every subscriber with `websockets.broadcast` (encoded once). Frames are built
with json.dumps, as the gateway's codec does.

Until session 23 `session.list` answered the newest 50 and `session.create` the id alone: past
50 sessions the gateway's list replies were the larger, 3.4 times at the end of a run of
workload (a) (170 sessions; docs/benchmarks.md, "Issue 13, session 23").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import uuid
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, broadcast, serve

LIST_LIMIT = 1000  # the gateway's (gateway/services/session_lists.py)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BareServer:
    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.last_seq = 0
        self.subscribers: set[ServerConnection] = set()
        self.sessions: list[dict] = []
        self._list_text: str | None = None  # session.list's result, encoded once between creates

    def _event(self, kind: str, session_id: str, data: dict) -> str:
        self.last_seq = next(self.seq)
        return json.dumps({"jsonrpc": "2.0", "method": "event", "params": {
            "seq": self.last_seq, "type": kind, "time": _now_iso(), "session_id": session_id,
            "data": data}}, separators=(",", ":"))

    def answer(self, ws: ServerConnection, method: str, params: dict) -> dict | str:
        """The result of one request: a dict, or its JSON text already encoded."""
        if method == "hello":
            return {"protocol": 1, "principal": "bench", "role": "dispatcher", "seq": self.last_seq}
        if method == "events.subscribe":
            self.subscribers.add(ws)
            return {"seq": self.last_seq}
        if method == "ping":
            return {}
        if method == "session.list":
            if self._list_text is None:
                self._list_text = json.dumps({"sessions": self.sessions[-LIST_LIMIT:]}, separators=(",", ":"))
            return self._list_text
        if method == "session.create":
            sid = uuid.uuid4().hex
            session = {"session_id": sid, "title": params.get("title") or "Incident", "state": "open",
                       "created_at": _now_iso(),
                       "closed_at": None, "created_by": "bench"}
            self.sessions.append(session)
            self._list_text = None
            broadcast(self.subscribers, self._event("session.state", sid, session))
            return session
        return {}

    async def handle(self, ws: ServerConnection) -> None:
        try:
            async for frame in ws:
                msg = json.loads(frame)
                result = self.answer(ws, msg.get("method", ""), msg.get("params") or {})
                if "id" in msg:
                    if isinstance(result, str):  # already encoded
                        await ws.send(f'{{"jsonrpc":"2.0","id":{json.dumps(msg["id"])},"result":{result}}}')
                    else:
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
