"""The reference side of benchmarks.sms: the bare library sending the same load, nothing behind it.

    python -m benchmarks.sms_bare twilio --api URL --rate 500 --burst 50 --in-flight 50 --recipients 10000
    python -m benchmarks.sms_bare smpp --port 2775 --rate 500 ...

Run by benchmarks.sms as its own process (its CPU is measured apart from the stub's), against the
same stub or simulator the gateway was measured against. No store, no outbox, no events: a token
bucket (`sms.outbox.TokenBucket`, the gateway's own) paces `in_flight` concurrent senders.
- twilio: the twilio library's async client (`AsyncTwilioHttpClient`, one aiohttp session with a
  pool of `in_flight` connections), `messages.create_async` with a StatusCallback to a bare aiohttp
  server here that answers every callback 204 (no signature check, nothing stored).
- smpp: aiosmpplib's ESME alone (benchmarks/smpp_bare_esme.py; the gateway's provider runs an ESME
  of its own since session 19), its final receipts counted in memory; `--esme ours`: the gateway's
  SMPP layer alone instead (sms.smpp.SmppProvider), to compare the two ESMEs.
Prints one JSON line: CPU seconds, the monotonic time (CLOCK_MONOTONIC, comparable with the parent's)
of each final receipt's arrival, failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from sms.outbox import TokenBucket

FINAL = ("delivered", "undelivered", "failed")
SENDER = "+15005550006"
BODY = "Flood warning district 3: move to high ground now."


class Receipts:
    def __init__(self, n: int) -> None:
        self.final_at: dict[str, float] = {}
        self.n = n
        self.all_final = asyncio.Event()

    def final(self, provider_id: str) -> None:
        self.final_at.setdefault(provider_id, time.monotonic())
        if len(self.final_at) >= self.n:
            self.all_final.set()


async def paced(n: int, rate: float, burst: float, in_flight: int, send: Any) -> int:
    """Call send(i) for i < n at `rate` (bucket of `burst`), at most `in_flight` at once; failures."""
    bucket = TokenBucket(rate, burst)
    slots = asyncio.Semaphore(in_flight)
    failures = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        nonlocal failures
        try:
            await send(i)
        except Exception:  # noqa: BLE001 - counted
            failures += 1
        finally:
            slots.release()

    for i in range(n):
        await slots.acquire()
        while not bucket.try_take(time.monotonic()):
            await asyncio.sleep(max(0.0, bucket.next_send_at(time.monotonic()) - time.monotonic()))
        task = asyncio.get_running_loop().create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return failures


async def twilio(a: argparse.Namespace, receipts: Receipts) -> int:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    async def callback(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("MessageStatus") in FINAL:
            receipts.final(str(form.get("MessageSid")))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", callback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    http = AsyncTwilioHttpClient(pool_connections=False, timeout=a.timeout,
                                 logger=logging.getLogger("bare.twilio"))
    http.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=a.in_flight))
    logging.getLogger("bare.twilio").setLevel(logging.WARNING)
    # the library builds https://api.twilio.com URLs; the stub is plain http: rewrite the host
    original = http.request

    async def request(method: str, url: str, *args: Any, **kw: Any) -> Any:
        return await original(method, url.replace("https://api.twilio.com", a.api), *args, **kw)

    http.request = request  # type: ignore[method-assign]
    client = Client(a.sid, a.token, http_client=http, environment={})
    status_url = f"http://127.0.0.1:{port}/status"

    async def send(i: int) -> None:
        await client.messages.create_async(to=f"+{a.base + i}", from_=SENDER, body=BODY, status_callback=status_url)

    try:
        failures = await paced(a.recipients, a.rate, a.burst, a.in_flight, send)
        await wait_final(receipts, a.final_timeout)
    finally:
        await http.session.close()
        await runner.cleanup()
    return failures


async def smpp(a: argparse.Namespace, receipts: Receipts) -> int:
    if a.esme == "ours":
        return await smpp_ours(a, receipts)
    from benchmarks.smpp_bare_esme import BareEsme

    esme = BareEsme(a.port, receipts.final, queue_size=max(100, a.in_flight), timeout=a.timeout)
    await esme.start()
    try:
        async with asyncio.timeout(10):
            while not esme.bound:
                await asyncio.sleep(0.01)
        failures = await paced(a.recipients, a.rate, a.burst, a.in_flight,
                               lambda i: esme.send(SENDER, f"+{a.base + i}", BODY))
        await wait_final(receipts, a.final_timeout)
    finally:
        await esme.stop()
    return failures


async def smpp_ours(a: argparse.Namespace, receipts: Receipts) -> int:
    """The gateway's SMPP layer alone: sms.smpp.SmppProvider (our ESME), nothing stored."""
    from sms.smpp import SmppProvider

    provider = SmppProvider("127.0.0.1", a.port, "gw", "secret", queue_size=max(100, a.in_flight),
                            response_timeout_s=a.timeout)

    def on_receipt(r: Any) -> None:
        if r.status in FINAL:
            receipts.final(r.provider_id)

    await provider.start(on_receipt, lambda m: None)
    try:
        failures = await paced(a.recipients, a.rate, a.burst, a.in_flight,
                               lambda i: provider.send(f"m{i}", SENDER, f"+{a.base + i}", BODY))
        await wait_final(receipts, a.final_timeout)
    finally:
        await provider.stop()
    return failures


async def wait_final(receipts: Receipts, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await receipts.all_final.wait()
    except TimeoutError:
        pass


async def run(a: argparse.Namespace) -> dict[str, Any]:
    receipts = Receipts(a.recipients)
    cpu0, t0 = time.process_time(), time.monotonic()
    failures = await (twilio(a, receipts) if a.provider == "twilio" else smpp(a, receipts))
    return {"failures": failures, "cpu_s": round(time.process_time() - cpu0, 2), "t0": t0,
            "final_at": sorted(receipts.final_at.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sms_bare", description=__doc__.split("\n")[0])
    ap.add_argument("provider", choices=("twilio", "smpp"))
    ap.add_argument("--api", default="", help="twilio: the stub's base URL")
    ap.add_argument("--sid", default="")
    ap.add_argument("--token", default="")
    ap.add_argument("--port", type=int, default=0, help="smpp: the simulator's port")
    ap.add_argument("--esme", choices=("aiosmpplib", "ours"), default="aiosmpplib",
                    help="smpp: aiosmpplib's ESME alone, or ours (sms.smpp.SmppProvider)")
    ap.add_argument("--recipients", type=int, default=10_000)
    ap.add_argument("--base", type=int, default=8613600000000, help="first number (digits)")
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--burst", type=float, default=50)
    ap.add_argument("--in-flight", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--final-timeout", type=float, default=60)
    a = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run(a))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
