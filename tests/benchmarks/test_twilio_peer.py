"""benchmarks.twilio_peer: the Twilio stub in processes of its own (issue 13: in the benchmark's own
process it was the bottleneck at 1,000/s for the bare library too). Two stub processes on one port:
creates spread over both, every message's three signed callbacks POSTed, what they saw merged."""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from benchmarks.twilio_peer import TwilioPeer

SID, TOKEN = "AC" + "1" * 32, "secret-token"
N = 60


async def test_two_stub_processes_share_a_port_and_their_creates_and_callbacks_are_merged() -> None:
    validator = RequestValidator(TOKEN)
    got: list[tuple[str, str]] = []
    all_in = asyncio.Event()
    forged = 0

    async def callback(request: web.Request) -> web.Response:
        nonlocal forged
        form = await request.post()
        if not validator.validate(str(request.url), dict(form), request.headers.get("X-Twilio-Signature", "")):
            forged += 1
            return web.Response(status=403)
        got.append((str(form["MessageSid"]), str(form["MessageStatus"])))
        if len(got) >= 3 * N:
            all_in.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    status_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/status"  # noqa: SLF001
    auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    t0 = time.monotonic()
    try:
        async with TwilioPeer(SID, TOKEN, procs=2) as peer:
            # a new connection per create: the kernel spreads them over the two processes
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                async def create(i: int) -> int:
                    async with http.post(f"{peer.url}/2010-04-01/Accounts/{SID}/Messages.json",
                                         data={"To": f"+1555{i:07d}", "From": "+15005550006", "Body": "hi",
                                               "StatusCallback": status_url},
                                         headers={"Authorization": auth}) as resp:
                        return resp.status
                assert await asyncio.gather(*(create(i) for i in range(N))) == [201] * N
            async with asyncio.timeout(60):  # the stubs POST them 50 ms apart
                await all_in.wait()
        t1 = time.monotonic()
    finally:
        await runner.cleanup()
    assert forged == 0
    assert len(peer.per_process) == 2 and all(n > 0 for n in peer.per_process), peer.per_process
    assert len(peer.arrivals) == N and peer.arrivals == sorted(peer.arrivals)
    assert t0 <= peer.arrivals[0] and peer.arrivals[-1] <= t1  # one monotonic clock across processes
    assert peer.creates == {f"+1555{i:07d}": 1 for i in range(N)}
    assert peer.callbacks == 3 * N and len(got) == 3 * N
    by_sid: dict[str, list[str]] = {}
    for sid, status in got:
        by_sid.setdefault(sid, []).append(status)
    assert len(by_sid) == N and all(v == ["queued", "sent", "delivered"] for v in by_sid.values())
