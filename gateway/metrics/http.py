"""GET /metrics on the http port, and the middleware counting refused provider webhooks.

Who may read: a client on a loopback address always (the shipped defaults bind the http port to
127.0.0.1 only); any other client only with `Authorization: Bearer <metrics.token>`, and only if
`metrics.token` is configured (otherwise 403). A reverse proxy on the same machine is a loopback
client: it must not pass /metrics through unless that is meant (docs/operations.md)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.exposure import is_loopback

from .registry import GatewayMetrics

log = structlog.get_logger("gateway.metrics")

METRICS_PATH = "/metrics"


def allowed(remote: str | None, authorization: str | None, token: str | None) -> bool:
    """Loopback, or the configured bearer token."""
    if remote is not None and is_loopback(remote):
        return True
    if not token or not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[len("Bearer "):].encode(), token.encode())


def metrics_route(metrics: GatewayMetrics, token: str | None) -> tuple[str, str, Callable]:
    async def serve(request: web.Request) -> web.Response:
        if not allowed(request.remote, request.headers.get("Authorization"), token):
            log.info("metrics.refused", peer=request.remote, token_configured=bool(token))
            if token:
                return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
            return web.Response(status=403, text="/metrics: loopback only (metrics.token not set)\n")
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return ("GET", METRICS_PATH, serve)


def webhook_rejections(metrics: GatewayMetrics, paths: Iterable[str]) -> Callable:
    """aiohttp middleware: a 4xx answer on a provider webhook path counts as a rejection."""
    watched = frozenset(paths)

    @web.middleware
    async def count(request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path not in watched:
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            if 400 <= status < 500:
                metrics.webhook_rejections.labels(request.path, str(status)).inc()

    return count
