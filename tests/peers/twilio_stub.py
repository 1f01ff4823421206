"""A local, stateful stand-in for Twilio's Messages API (2010-04-01), for contract tests.

It serves create / list / fetch on 127.0.0.1 (a free port), answers with Twilio-shaped JSON (the
spec's `api.v2010.account.message` resource, RFC 2822 dates, `SM` + 32 hex sids, list pages with
`first_page_uri` / `next_page_uri` ...), and after each accepted create POSTs signed status
callbacks to the message's StatusCallback: queued -> sent -> delivered, or -> undelivered (30003)
for a number in `bad_numbers`. Like Twilio, a message has no `date_sent` until it is sent (a
DateSent filter does not find it before). Webhooks (callbacks and `send_inbound`) that get no
answer or a 5xx are POSTed again, with the same I-Twilio-Idempotency-Token, after
`webhook_retry_s`, until `webhook_deadline_s` has passed. Errors are Twilio-shaped too: 21211 invalid 'To' (400), 20003
authentication (401), 20404 not found (404), and whatever `fail_next()` injects (429 / 5xx).

    async with twilio_stub(SID, TOKEN, bad_numbers={"+15550000000"}) as stub:
        stub.url                       # http://127.0.0.1:<port>  (ca_file=: webhooks to https:// trust it)
        stub.fail_next(2, 429)         # the next 2 creates are refused (nothing stored)
        stub.fail_next(1, 429, retry_after=2)   # ... with a Retry-After header
        stub.delay_next(1, 3.0)        # the next create is stored, then answered 3 s late
        stub.stall_next(1)             # the next create stays `queued` (no callbacks) ...
        stub.release_stalled()         # ... until this
        stub.creates["+1555..."]       # accepted creates per To (proves no duplicates)
        stub.callbacks                 # (sid, status, HTTP status of our webhook) sent so far
        await stub.send_inbound(url, "+1555...", "+1500...", "hi")   # a signed inbound webhook

Signatures are computed here from Twilio's documented algorithm (URL + each POST parameter name
and value, sorted by name; HMAC-SHA1 with the auth token; base64), not with the library under test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import ClientSession, ClientTimeout, web

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature for a POST of `params` to `url` (HMAC-SHA1, base64)."""
    items = sorted(params.items() if isinstance(params, Mapping) else params)
    data = url + "".join(name + value for name, value in items)
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _rfc2822(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC))  # "Thu, 24 Aug 2023 05:01:45 +0000"


def _parse_when(value: str) -> datetime | date:
    """A DateSent filter value: YYYY-MM-DD (a day) or an ISO 8601 time."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value)
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _cmp(sent: datetime, bound: datetime | date) -> int:
    """-1 / 0 / 1: `sent` before, at (same day for a date bound), after `bound`."""
    if isinstance(bound, datetime):
        return (sent > bound) - (sent < bound)
    day = sent.astimezone(UTC).date()
    return (day > bound) - (day < bound)


@dataclass
class _Injected:
    status: int
    remaining: int
    retry_after: float | None = None


@dataclass
class TwilioStub:
    account_sid: str
    auth_token: str
    bad_numbers: frozenset[str] = frozenset()
    callback_delay_s: float = 0.05
    webhook_retry_s: float = 0.2
    webhook_deadline_s: float = 60.0
    host: str = "127.0.0.1"
    port: int = 0
    ca_file: str | None = None  # trust only these CAs for webhooks to an https:// URL
    reuse_port: bool = False  # SO_REUSEPORT: several stub processes share `port` (benchmarks.twilio_peer)

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # sid -> resource, in creation order
    creates: Counter[str] = field(default_factory=Counter)      # accepted creates per To
    create_attempts: int = 0                                     # every POST to Messages.json
    callbacks: list[tuple[str, str, int]] = field(default_factory=list)  # (sid, status, our answer)
    requests: list[tuple[str, str]] = field(default_factory=list)        # (method, path_qs) seen
    create_times: list[float] = field(default_factory=list)              # loop time of each create POST
    webhook_answers: Counter[int] = field(default_factory=Counter)       # every answer (0: none)
    webhook_log: list[tuple[str, str, int]] = field(default_factory=list)  # (MessageSid, status, answer)
    api_peers: set[tuple[str, int]] = field(default_factory=set)  # client (host, port) of every API request

    def __post_init__(self) -> None:
        self._failures: list[_Injected] = []
        self._delays: list[list[float]] = []  # [seconds, remaining]
        self._stall = 0
        self._stalled: list[tuple[str, str]] = []  # (sid, callback url) held at `queued`
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.callback_event = asyncio.Event()

    # --- control -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, n: int, status: int = 429, retry_after: float | None = None) -> None:
        """The next `n` creates are answered `status` (Twilio-shaped error, with a Retry-After
        header if given) and not stored."""
        self._failures.append(_Injected(status, n, retry_after))

    def stall_next(self, n: int) -> None:
        """The next `n` creates are stored and answered, but stay `queued` (not sent, no
        date_sent, no callbacks) until `release_stalled()`."""
        self._stall += n

    def release_stalled(self) -> None:
        for sid, url in self._stalled:
            self._spawn(self._report(sid, url))
        self._stalled.clear()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def delay_next(self, n: int, seconds: float) -> None:
        """The next `n` creates are stored (and their callbacks sent), then answered `seconds` late."""
        self._delays.append([seconds, n])

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.messages.clear()
        self.creates.clear()
        self.callbacks.clear()
        self.requests.clear()
        self.create_attempts = 0
        self.create_times.clear()
        self.webhook_answers.clear()
        self.webhook_log.clear()
        self.api_peers.clear()
        self._stalled.clear()
        self._stall = 0
        self._failures.clear()
        self._delays.clear()

    async def wait_callbacks(self, n: int, timeout: float = 5.0) -> None:
        """Until at least `n` status callbacks were sent (and answered)."""
        async with asyncio.timeout(timeout):
            while len(self.callbacks) < n:
                self.callback_event.clear()
                await self.callback_event.wait()

    @staticmethod
    def inbound_params(account_sid: str, sender: str, to: str, body: str, sid: str | None = None) -> dict[str, str]:
        sid = sid or "SM" + secrets.token_hex(16)
        return {
            "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": account_sid,
            "From": sender, "To": to, "Body": body, "NumMedia": "0", "NumSegments": "1",
            "ApiVersion": API_VERSION, "SmsStatus": "received",
        }

    async def send_inbound(self, url: str, sender: str, to: str, body: str, *, sid: str | None = None,
                           retry: bool = False) -> tuple[int, str]:
        """POST a signed inbound-message webhook to `url`; (HTTP status, body) of the answer
        (the last one when `retry`: sent again, like Twilio, while there is no 2xx/4xx answer)."""
        params = self.inbound_params(self.account_sid, sender, to, body, sid)
        if retry:
            return await self.deliver_webhook(url, params)
        return await self.post_signed(url, params)

    async def deliver_webhook(self, url: str, params: Mapping[str, str]) -> tuple[int, str]:
        """POST a signed webhook until it is answered (not 5xx, not a connection failure), at most
        `webhook_deadline_s`; the same idempotency token on every try. The last answer (0: none)."""
        token = secrets.token_hex(8)
        deadline = asyncio.get_running_loop().time() + self.webhook_deadline_s
        while True:
            try:
                answer = await self.post_signed(url, params, token=token)
            except (OSError, TimeoutError, aiohttp.ClientError):  # the gateway may be down
                answer = (0, "")
            self.webhook_answers[answer[0]] += 1
            self.webhook_log.append((params.get("MessageSid", ""), params.get("MessageStatus", "inbound"),
                                     answer[0]))
            if 200 <= answer[0] < 500 or asyncio.get_running_loop().time() > deadline:
                return answer
            await asyncio.sleep(self.webhook_retry_s)

    async def post_signed(self, url: str, params: Mapping[str, str], *, sign_url: str | None = None,
                          signature: str | None = None, token: str | None = None) -> tuple[int, str]:
        """POST `params` form-encoded to `url`, signed for `sign_url` (default `url`) unless a
        `signature` is given."""
        assert self._session is not None, "stub not started"
        sig = signature if signature is not None else twilio_signature(self.auth_token, sign_url or url, params)
        async with self._session.post(
            url, data=urlencode(params), headers={
                "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1", "I-Twilio-Idempotency-Token": token or secrets.token_hex(8),
            },
        ) as resp:
            return resp.status, await resp.text()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account}}"
        app.router.add_post(base + "/Messages.json", self._create)
        app.router.add_get(base + "/Messages.json", self._list)
        app.router.add_get(base + "/Messages/{sid}.json", self._fetch)
        tls = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
        self._session = ClientSession(timeout=ClientTimeout(total=5), connector=aiohttp.TCPConnector(ssl=tls))
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_port=self.reuse_port or None)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to read the port picked for port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- the API -----------------------------------------------------------------------------

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
             "status": status},
            status=status,
        )

    def _check(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path_qs))
        if request.transport is not None:
            self.api_peers.add(request.transport.get_extra_info("peername")[:2])
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if not hmac.compare_digest(auth, expected) or request.match_info["account"] != self.account_sid:
            return self._error(401, 20003, "Authenticate")
        return None

    def _uri(self, sid: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        self.create_attempts += 1
        self.create_times.append(asyncio.get_running_loop().time())
        form = await request.post()
        for failure in self._failures:
            if failure.remaining > 0:
                failure.remaining -= 1
                if failure.status == 429:
                    refused = self._error(429, 20429, "Too Many Requests")
                else:
                    refused = self._error(failure.status, 20500, "An internal server error has occurred")
                if failure.retry_after is not None:
                    refused.headers["Retry-After"] = f"{failure.retry_after:g}"
                return refused
        to, sender, body = str(form.get("To", "")), str(form.get("From", "")), str(form.get("Body", ""))
        if not E164.match(to):
            return self._error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        now = datetime.now(UTC).replace(microsecond=0)
        sid = "SM" + secrets.token_hex(16)
        message: dict[str, Any] = {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": body,
            "date_created": _rfc2822(now), "date_sent": None, "date_updated": _rfc2822(now),
            "direction": "outbound-api", "error_code": None, "error_message": None, "from": sender,
            "messaging_service_sid": None, "num_media": "0", "num_segments": "1", "price": None,
            "price_unit": "USD", "sid": sid, "status": "queued",
            "subresource_uris": {"media": self._uri(sid).removesuffix(".json") + "/Media.json"},
            "to": to, "uri": self._uri(sid),
        }
        self.messages[sid] = message
        self.creates[to] += 1
        callback = form.get("StatusCallback")
        if self._stall > 0:
            self._stall -= 1
            self._stalled.append((sid, str(callback or "")))
        elif callback:
            self._spawn(self._report(sid, str(callback)))
        for delay in self._delays:
            if delay[1] > 0:
                delay[1] -= 1
                await asyncio.sleep(delay[0])
                break
        return web.json_response(message, status=201)

    async def _report(self, sid: str, url: str) -> None:
        message = self.messages[sid]
        final = "undelivered" if message["to"] in self.bad_numbers else "delivered"
        for status in ("queued", "sent", final):
            await asyncio.sleep(self.callback_delay_s)
            message["status"] = status
            message["date_updated"] = _rfc2822(datetime.now(UTC))
            if status == "sent":
                message["date_sent"] = message["date_updated"]
            params = {
                "AccountSid": self.account_sid, "ApiVersion": API_VERSION, "From": message["from"],
                "To": message["to"], "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
                "SmsStatus": status,
            }
            if status == "undelivered":
                message["error_code"], message["error_message"] = 30003, "Unreachable destination handset"
                params["ErrorCode"] = "30003"
            if not url:
                continue
            answer, _ = await self.deliver_webhook(url, params)
            self.callbacks.append((sid, status, answer))
            self.callback_event.set()

    async def _fetch(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        message = self.messages.get(request.match_info["sid"])
        if message is None:
            return self._error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(message)

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := self._check(request)) is not None:
            return refused
        q = request.query
        try:
            page_size = min(max(int(q.get("PageSize", "50")), 1), 1000)
            page = max(int(q.get("Page", "0")), 0)
            bounds = [(name, _parse_when(q[name])) for name in ("DateSent", "DateSent>", "DateSent<") if q.get(name)]
        except ValueError:
            return self._error(400, 20001, "Invalid filter or paging parameter")
        selected = []
        for m in reversed(self.messages.values()):  # newest first, as Twilio lists
            if q.get("To") and m["to"] != q["To"]:
                continue
            if q.get("From") and m["from"] != q["From"]:
                continue
            if bounds and m["date_sent"] is None:
                continue  # not sent yet: no DateSent filter finds it (as at Twilio)
            if bounds:
                sent = datetime.strptime(m["date_sent"], "%a, %d %b %Y %H:%M:%S %z")
                ok = {"DateSent": lambda c: c == 0, "DateSent>": lambda c: c >= 0, "DateSent<": lambda c: c <= 0}
                if not all(ok[name](_cmp(sent, bound)) for name, bound in bounds):
                    continue
            selected.append(m)
        start = page * page_size
        chunk = selected[start:start + page_size]
        filters = [(k, q[k]) for k in ("To", "From", "DateSent", "DateSent>", "DateSent<") if q.get(k)]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def page_uri(n: int) -> str:
            token = [("PageToken", f"PA{chunk[-1]['sid']}")] if n > page and chunk else []
            return base + "?" + urlencode([*filters, ("PageSize", str(page_size)), ("Page", str(n)), *token])

        has_next = start + page_size < len(selected)
        return web.json_response({
            "messages": chunk, "start": start, "end": start + max(len(chunk) - 1, 0), "page": page,
            "page_size": page_size, "uri": page_uri(page), "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if has_next else None,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        })


@contextlib.asynccontextmanager
async def twilio_stub(account_sid: str, auth_token: str, **options: Any) -> AsyncIterator[TwilioStub]:
    stub = TwilioStub(account_sid, auth_token, **options)
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()
