"""The uploads on the http port: `POST /v1/uploads` and `GET /v1/uploads/{sha256}`.

Both take `Authorization: Bearer <token>`, a control-channel token. A wrong token spends the
source's budget of failed authentications, the same `FailureThrottle` as a failed `hello`: while
it is spent the answer is 429 (Retry-After) and no token is tried. Errors are JSON,
`{"error": {"reason", "message", "details"}}`, the `reason` strings of the control channel, with
the status: 401 not-authenticated, 403 forbidden, 404 no-such-upload, 408 body-timeout, 413
too-large, 415 unsupported-type / type-mismatch, 429 rate-limited, 503 busy.

A client sending `Expect: 100-continue` is refused (token, role, type, declared length) before
it sends the body. A refusal that leaves part of a body unread closes the connection.

Every request whose token was good is audited like a control-channel request (`audit` rows,
method `http.upload` / `http.download`, the outcome and the error reason).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway import errors
from gateway.errors import GatewayError, NotAuthenticated, RateLimited
from gateway.http import streams_body
from gateway.limits import FailureThrottle
from gateway.protocol import Principal

from .service import Incomplete, UploadRefused, UploadService

log = structlog.get_logger(__name__)

PATH = "/v1/uploads"
# The HTTP status of each class of the package's errors (by its JSON-RPC code): every
# `no-such-*` is a 404, whatever the object; anything else is our bug (500).
_STATUS = {errors.INVALID_PARAMS: 400, errors.NOT_AUTHENTICATED: 401, errors.FORBIDDEN: 403,
           errors.NOT_FOUND: 404, errors.CONFLICT: 409, errors.RATE_LIMITED: 429, errors.UNAVAILABLE: 503}


def error_response(err: GatewayError) -> web.Response:
    status = err.status if isinstance(err, UploadRefused) else _STATUS.get(err.code, 500)
    body = {"reason": err.reason, "message": err.message}
    if err.details:
        body["details"] = err.details
    headers = {}
    if status == 401:
        headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="dispatch-gateway"'
    if status in (429, 503):
        headers[hdrs.RETRY_AFTER] = str(max(1, round(err.details.get("retry_after_s", 1))))
    return web.json_response({"error": body}, status=status, headers=headers,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


# (principal, role, method, params, "ok" | "error", error reason): Store.add_audit
Audit = Callable[[str, str, str, dict[str, Any], str, str | None], Awaitable[None]]


class UploadRoutes:
    def __init__(self, uploads: UploadService, authenticate: Callable[[str], Principal | None],
                 throttle: FailureThrottle, audit: Audit | None = None) -> None:
        self._uploads, self._authenticate, self._throttle = uploads, authenticate, throttle
        self._audit_cb = audit

    async def _audit(self, principal: Principal | None, method: str, params: dict[str, Any],
                     err: GatewayError | None) -> None:
        if principal is None or self._audit_cb is None:
            return  # no good token: nothing to attribute (logged as http.auth.failed)
        try:
            await self._audit_cb(principal.name, principal.role, method, params,
                                 "error" if err else "ok", err.reason if err else None)
        except Exception:
            log.exception("http.audit.failed", method=method)

    def routes(self) -> list[tuple]:
        return [("POST", PATH, self.post, {"expect_handler": self.expect}),
                ("GET", PATH + "/{sha256}", self.get), ("HEAD", PATH + "/{sha256}", self.get)]

    def principal(self, request: web.Request) -> Principal:
        source = request.remote or "?"
        wait = self._throttle.retry_after(source, time.monotonic())
        if wait > 0:
            raise RateLimited("too many failed authentications from this address",
                              details={"retry_after_s": round(wait, 3)})
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("an Authorization: Bearer <token> header is needed")
        principal = self._authenticate(token.strip())
        if principal is None:
            self._throttle.failed(source, time.monotonic())
            log.info("http.auth.failed", source=source, path=request.path)
            raise NotAuthenticated("invalid token")
        return principal

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """Expect: 100-continue: what can be refused before the body is refused now."""
        try:
            self._uploads.check_start(self.principal(request), request.headers.get(hdrs.CONTENT_TYPE),
                                      request.content_length)
        except GatewayError as err:
            response = error_response(err)
            response.force_close()
            return response
        if request.version >= (1, 1) and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is not the response's body
        return None

    @streams_body
    async def post(self, request: web.Request) -> web.Response:
        principal = None
        params: dict[str, Any] = {"content_type": request.headers.get(hdrs.CONTENT_TYPE, "")[:100],
                                  "content_length": request.content_length}
        try:
            principal = self.principal(request)
            stored = await self._uploads.receive(principal, request.headers.get(hdrs.CONTENT_TYPE),
                                                 request.content_length, _body(request))
        except GatewayError as err:
            log.info("upload.refused", reason=err.reason, source=request.remote)
            await self._audit(principal, "http.upload", params, err)
            response = error_response(err)
            if not request.content.at_eof():
                response.force_close()  # the rest of the body is not read
            return response
        await self._audit(principal, "http.upload", {**params, **stored.public()}, None)
        return web.json_response(stored.public(), status=201 if stored.new else 200)

    async def get(self, request: web.Request) -> web.StreamResponse:
        principal = None
        params = {"upload_id": request.match_info["sha256"][:80]}
        try:
            principal = self.principal(request)
            found = await self._uploads.open_for(principal, request.match_info["sha256"])
        except GatewayError as err:
            await self._audit(principal, "http.download", params, err)
            return error_response(err)
        await self._audit(principal, "http.download", params, None)
        return web.FileResponse(found.path, headers={
            hdrs.CONTENT_TYPE: found.type, hdrs.CACHE_CONTROL: "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff"})


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request's body as it arrives; a cut connection or a broken chunked/length framing is
    the typed `Incomplete` (nothing of it is kept)."""
    try:
        async for chunk in request.content.iter_any():
            yield chunk
    except (ConnectionError, HttpProcessingError) as exc:
        raise Incomplete("the upload was cut off before its end", details={"error": type(exc).__name__}) from None
