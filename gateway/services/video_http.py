"""`GET /v1/video/recordings/{stream_id}` on the http port: a finished recording, with a token.

`Authorization: Bearer <token>`: any token whose role may read incidents (dispatcher, observer,
admin); a terminal's token, a bad one or none gets 401/403. The file is the stream's WebM under
`video.recordings_dir` (found by the stream id alone, so recordings made before a restart are
served too); sent by aiohttp's FileResponse (sendfile, never read into memory).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.http import Route
from gateway.protocol import Principal
from gateway.protocol.methods import READ

_STREAM_ID = re.compile(r"^vid-[0-9a-f]{16}$")


def recording_routes(recordings_dir: Path,
                     authenticate: Callable[[str], Principal | None]) -> list[Route]:
    async def download(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        principal = authenticate(token.strip()) if scheme.lower() == "bearer" and token else None
        if principal is None:
            raise web.HTTPUnauthorized(text="a bearer token is needed\n",
                                       headers={"WWW-Authenticate": "Bearer"})
        if principal.role not in READ:
            raise web.HTTPForbidden(text="this role may not read recordings\n")
        stream_id = request.match_info["stream_id"]
        path = recordings_dir / f"{stream_id}.webm"
        if not _STREAM_ID.match(stream_id) or not path.is_file():
            raise web.HTTPNotFound(text="no such recording\n")
        return web.FileResponse(path, headers={"Content-Type": "video/webm"})

    return [("GET", "/v1/video/recordings/{stream_id}", download)]
