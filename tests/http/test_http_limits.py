"""The HTTP port's limits over real sockets on 127.0.0.1: a header deadline cuts slowloris clients
while /healthz still answers, and connections per source are bounded (issue 8 §2)."""

import asyncio

import pytest
from aiohttp import web

from gateway import http


async def _ok():
    return True


async def _form(request):  # like the SMS provider's webhooks
    return web.json_response({"fields": len(await request.post())})


@pytest.fixture
async def start_http():
    runners = []

    async def start(**limits):
        r = await http.start("127.0.0.1", 0, {"store": _ok}, [("POST", "/form", _form)],
                             http.HttpLimits(**limits))
        runners.append(r)
        return http.bound_port(r)

    yield start
    for r in runners:
        await r.cleanup()


async def healthz(port, local_addr=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local_addr)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def get(port, path, local_addr=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local_addr)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # keep-alive: the server closes
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def slow_client(port, cut: asyncio.Event | None = None):
    """Sends a request's headers one byte every 50 ms; returns when the server cuts it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    try:
        for byte in request:
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    return True
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                return True
        return False  # never cut
    finally:
        writer.close()


async def test_slow_headers_are_cut_after_the_deadline_while_healthz_answers(start_http):
    port = await start_http(header_timeout_s=1.0, max_connections_per_source=100)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    slow = [asyncio.create_task(slow_client(port)) for _ in range(30)]
    assert b"200 OK" in await healthz(port)  # while they dribble
    results = await asyncio.wait_for(asyncio.gather(*slow), 60)
    assert all(results)
    assert loop.time() - t0 < 30  # cut near the deadline, not after 10,000 bytes (500 s)
    assert b"200 OK" in await healthz(port)


async def test_connections_per_source_are_bounded(start_http):
    port = await start_http(header_timeout_s=30, max_connections_per_source=3)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        reply = await get(port, "/form")  # (health requests have a reserve of their own, below)
        assert reply == b"" or b"503" in reply.split(b"\r\n")[0]
        assert b"200 OK" in await healthz(port, local_addr=("127.0.0.2", 0))  # another source
        _, w = held.pop()
        w.close()
        await w.wait_closed()
        for _ in range(100):  # the server sees the close soon; wait on its answer, not a sleep
            if b"200 OK" in await healthz(port):
                break
        else:
            pytest.fail("a released slot was never reused")
    finally:
        for _, w in held:
            w.close()


async def test_total_connections_are_bounded(start_http):
    port = await start_http(header_timeout_s=30, max_connections=2)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    try:
        reply = await get(port, "/form", local_addr=("127.0.0.3", 0))
        assert reply == b"" or b"503" in reply.split(b"\r\n")[0]
    finally:
        for _, w in held:
            w.close()


async def test_slow_body_is_cut_after_the_deadline(start_http):
    """Headers complete at once, then the body (a webhook's form) dribbles: cut too."""
    port = await start_http(header_timeout_s=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        writer.write(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                     b"\r\nContent-Length: 600\r\n\r\n")
        answer = b""
        for _ in range(600):  # 30 s if never cut
            writer.write(b"a")
            try:
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), 0.05)
                break  # the server answered (and closed)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                break
        assert loop.time() - t0 < 8, f"a dribbled body held the connection: {answer!r}"
        assert answer == b"" or b" 408 " in answer.split(b"\r\n")[0]
    finally:
        writer.close()


async def test_health_answers_while_the_listener_is_full(start_http):
    """Idle connections hold every slot (the total and this source's): /healthz and /readyz are
    still answered from the reserve, anything else there is refused."""
    port = await start_http(header_timeout_s=30, max_connections=4, max_connections_per_source=4,
                            health_reserve=2)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    try:
        reply = await healthz(port)
        assert reply.startswith(b"HTTP/1.1 200 "), reply
        assert reply.endswith(b'{"status": "ok"}')
        ready = await get(port, "/readyz?verbose=1")
        assert ready.startswith(b"HTTP/1.1 200 ") and b'"checks": {"store": true}' in ready, ready
        refused = await get(port, "/form")
        assert refused == b"" or refused.startswith(b"HTTP/1.1 503 "), refused
        # idle connections in the reserve too: the oldest gives way to a health request
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        held += idle
        assert (await healthz(port)).startswith(b"HTTP/1.1 200 ")
        dropped = await asyncio.wait_for(idle[0][0].read(), 10)  # the oldest gave way
        assert dropped == b"" or dropped.startswith(b"HTTP/1.1 503 "), dropped
    finally:
        for _, w in held:
            w.close()


async def test_a_body_already_in_whole_arms_no_deadline_timer(start_http, monkeypatch):
    """A webhook's small form comes with its headers: nothing to wait for, so no timer (before:
    one per request, three per SMS at Twilio's rates). The dribbled body above is still cut."""
    armed = []

    class Asyncio:
        def __getattr__(self, name):
            return getattr(asyncio, name)

        def timeout(self, delay):
            armed.append(delay)
            return asyncio.timeout(delay)

    monkeypatch.setattr(http, "asyncio", Asyncio())
    port = await start_http(header_timeout_s=1.0)
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: 7\r\nConnection: close\r\n\r\na=1&b=2")
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        assert b" 200 " in answer.split(b"\r\n")[0] and answer.endswith(b'{"fields": 2}'), answer
    assert armed == []
