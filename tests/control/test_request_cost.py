"""What one request costs the control server beyond its handler (issue 13), counted, not timed:
real sockets on 127.0.0.1, handlers defined here."""

from __future__ import annotations

from structlog.testing import capture_logs

from gateway.client import GatewayClient
from gateway.errors import NotFound
from gateway.protocol import Principal, Registry
from gateway.server import ControlServer, ServerConfig, ServerHooks


async def test_a_request_that_logs_nothing_binds_no_logger() -> None:
    """The connection's logger is bound once (conn_id, principal, role); a request binds its own
    (method, request_id) only when something is logged for it."""
    registry = Registry()
    contexts = []

    async def session_list(ctx, p):
        contexts.append(ctx)
        return {"sessions": []}

    async def session_get(ctx, p):
        contexts.append(ctx)
        raise NotFound("no such session", reason="no-such-session")

    registry.register("session.list", session_list)
    registry.register("session.get", session_get)
    srv = ControlServer(registry, {"tok": Principal("alice", "dispatcher")}.get, ServerHooks(), ServerConfig())
    await srv.start()
    client = GatewayClient(srv.url, "tok", reconnect=False)
    try:
        await client.open()
        for _ in range(3):
            assert await client.call("session.list") == {"sessions": []}
        assert all(ctx._log is None for ctx in contexts)
        with capture_logs() as logs:
            try:
                await client.call("session.get", session_id="s1")
            except Exception as exc:  # the error reply
                assert getattr(exc, "reason", None) == "no-such-session"
        (err,) = [e for e in logs if e["event"] == "control.request.error"]
        assert err["method"] == "session.get" and err["principal"] == "alice" and "request_id" in err
        assert contexts[-1]._log is not None
    finally:
        await client.close()
        await srv.stop()
