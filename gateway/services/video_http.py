"""`GET /v1/video/recordings/{stream_id}` on the http port: a finished recording, with a token.

Authentication is the uploads' (gateway/uploads/http.py): `Authorization: Bearer <token>` of
the control channel, a wrong token spending the source's budget of failed authentications (429
while spent), errors as JSON with the control channel's reasons. Any role that reads incidents
may download (dispatcher, observer, admin); a terminal's token gets 403. The file is the
stream's WebM (or Matroska, for H.264) under `video.recordings_dir`, found by the stream id
alone (recordings made before a restart are served too), sent by aiohttp's FileResponse
(sendfile, never read into memory).
Every download with a good token is audited (`http.video.recording`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import hdrs, web

from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.http import Route
from gateway.protocol import Principal
from gateway.protocol.methods import READ
from gateway.uploads.http import Audit, error_response

log = structlog.get_logger(__name__)

_STREAM_ID = re.compile(r"^vid-[0-9a-f]{16}$")
TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska"}  # video/recording.py writes one of them


def recording_routes(recordings_dir: Path, principal_of: Callable[[web.Request], Principal],
                     audit: Audit | None = None) -> list[Route]:
    async def download(request: web.Request) -> web.StreamResponse:
        principal: Principal | None = None
        stream_id = request.match_info["stream_id"]
        params: dict[str, Any] = {"stream_id": stream_id[:80]}
        path = next((p for p in (recordings_dir / f"{stream_id}{ext}" for ext in TYPES) if p.is_file()),
                    recordings_dir / f"{stream_id}.webm")
        err: GatewayError | None = None
        try:
            principal = principal_of(request)
            if principal.role not in READ:
                raise Forbidden("this role may not read recordings", details={"role": principal.role})
            if not _STREAM_ID.match(stream_id) or not path.is_file():
                raise NotFound("no such recording", reason="no-such-recording", details=params)
        except GatewayError as e:
            err = e
        if principal is not None and audit is not None:
            try:
                await audit(principal.name, principal.role, "http.video.recording", params,
                            "error" if err else "ok", err.reason if err else None)
            except Exception:
                log.exception("http.audit.failed", method="http.video.recording")
        if err is not None:
            return error_response(err)  # 401, 403, 404 (no-such-recording), 429 by the error's class
        return web.FileResponse(path, headers={hdrs.CONTENT_TYPE: TYPES[path.suffix],
                                               "X-Content-Type-Options": "nosniff"})

    return [("GET", "/v1/video/recordings/{stream_id}", download)]
