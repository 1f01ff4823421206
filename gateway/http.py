"""aiohttp side door for operators and orchestrators: /healthz (alive) and /readyz (ready)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Check = Callable[[], Awaitable[bool]]

CHECKS_KEY = web.AppKey("checks", dict[str, Check])


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    results: dict[str, bool] = {}
    for name, check in request.app[CHECKS_KEY].items():
        try:
            results[name] = bool(await check())
        except Exception:  # a failing check means not ready, never a 500
            results[name] = False
    ready = all(results.values())
    return web.json_response(
        {"status": "ready" if ready else "not-ready", "checks": results}, status=200 if ready else 503
    )


Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def make_app(checks: dict[str, Check], routes: list[Route] = ()) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)  # webhooks are small forms
    app[CHECKS_KEY] = checks
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    for method, path, handler in routes:  # e.g. the SMS provider's webhooks
        app.router.add_route(method, path, handler)
    return app


async def start(host: str, port: int, checks: dict[str, Check], routes: list[Route] = ()) -> web.AppRunner:
    """Start serving; returns the runner to `cleanup()` at shutdown."""
    runner = web.AppRunner(make_app(checks, routes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (useful when configured as 0)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server and server.sockets:
            return server.sockets[0].getsockname()[1]
    raise RuntimeError("http: not started")
