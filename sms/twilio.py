"""Twilio as an SMS provider: the Messages API through the twilio library's async client, and the
two webhooks Twilio calls (status callbacks and inbound messages, `TwilioWebhooks`), each checked
with X-Twilio-Signature before anything is acted on. By default the API side runs in a worker
process (sms/twilio_process.py, sms/api_worker/) and the webhooks in the gateway; this provider
runs both in one process (`sms.twilio.api_worker = false`, and inside that worker).

    provider = TwilioProvider(sid, token, from_number="+15005550006", public_url="https://gw.example")
    for method, path, handler in provider.webhook_routes():
        app.router.add_route(method, path, handler)
    await provider.start(on_receipt, on_inbound)
    submitted = await provider.send("m-1", "+15005550006", "+15551234567", "hello")

Every API call has a deadline (`timeout_s`; the library's async client has none of its own) and is
never retried here: retries are the outbox's decision (`ProviderError.retryable`). A timed-out
create may still have been accepted by Twilio: reconcile with `find_sent()` before sending again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import aiohttp
import structlog
from aiohttp import web
from multidict import MultiDict
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from sms.provider import Inbound, OnInbound, OnReceipt, ProviderError, Receipt, Remote, Submitted, deliver
from sms.twilio_signature import WebhookSignature

log = structlog.get_logger(__name__)
# Whether this module's debug lines are wanted (the stdlib level, cached by logging): asked before
# the per-message ones, which structlog otherwise builds a bound logger and runs its processor
# chain for, only to drop (a create and three callbacks a message).
_debug = logging.getLogger(__name__).isEnabledFor

STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
DEFAULT_API_BASE = "https://api.twilio.com"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
_TWILIO_API_HOST = "api.twilio.com"
_NO_TIMERS = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


# The library logs every request and answer at INFO (method, URL, headers): thousands of lines a
# second at carrier rates, for nothing our own log does not say. Its warnings still come through.
_LIBRARY_LOG = logging.getLogger("sms.twilio.library")
_LIBRARY_LOG.setLevel(logging.WARNING)


class _HttpClient(AsyncTwilioHttpClient):
    """The library's async client with a deadline on every request and the API host rewritten to
    `api_base` (a local mock or proxy in tests); the request itself is made here (`request`). One aiohttp session (one connection pool, at most
    `max_connections` connections, kept alive between requests) is made on first use, inside the
    running loop, and closed by `close()`."""

    def __init__(self, api_base: str, timeout_s: float, max_connections: int = 20) -> None:
        super().__init__(pool_connections=False, timeout=timeout_s, logger=_LIBRARY_LOG)
        base = urlsplit(api_base)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ValueError(f"api_base must be an http(s) URL, not {api_base!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._base = base
        self.max_connections = max_connections
        self._auth: tuple[tuple[str, str], str] | None = None  # (login, password), its header
        # rewrite(url) kept for the last few URLs (a create's is the same every time)
        self._rewritten = functools.lru_cache(maxsize=64)(self.rewrite)
        self._quote = functools.lru_cache(maxsize=1024)(lambda text: quote_plus(text))  # for the forms

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.hostname != _TWILIO_API_HOST:
            return url
        path = self._base.path.rstrip("/") + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, parts.fragment))

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        """The library's request, made here: the form encoded once into the body (aiohttp built a
        `FormData`, and a multipart writer beside it, per request from the dict), the
        Authorization header and the rewritten URL computed once, not per request, and none of
        the library's request and answer log lines formatted for a logger that drops them."""
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        deadline = timeout if timeout is not None else self.timeout
        headers = dict(headers or {})
        if auth is not None:  # as a header: aiohttp deprecates BasicAuth / auth=
            headers["Authorization"] = self._authorization(auth)
        body = None
        if data:  # what FormData made of the dict: urlencoded, doseq
            body = self._form(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.session is None:
            pool = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections)
            # No timers of aiohttp's own: the deadline below covers connect, send and the whole
            # answer (aiohttp armed a second timer per request for the same bound).
            self.session = aiohttp.ClientSession(connector=pool, timeout=_NO_TIMERS)
        async with asyncio.timeout(deadline):  # connect, send, and read the whole body
            async with self.session.request(method.upper(), self._rewritten(url), params=params, data=body,
                                            headers=headers, allow_redirects=allow_redirects) as answer:
                response = TwilioResponse(answer.status, await answer.text(), answer.headers)
        retry_after = _retry_after(response.headers)
        if response.status_code in (429, 503) and retry_after is not None:
            # the library's exception drops the headers: keep the server's Retry-After here
            raise ProviderError(f"twilio: HTTP {response.status_code}", status_code=response.status_code,
                                details={"retry_after_s": retry_after})
        return response

    def _form(self, data: dict[str, object]) -> bytes:
        """`urlencode(data, doseq=True)`, each text quoted once: the From number, the callback URL
        and an alert's body are the same for every create (only To differs)."""
        if not all(type(v) is str for v in data.values()):
            return urlencode(data, doseq=True).encode()
        parts = [f"{self._quote(name)}={self._quote(value)}" for name, value in data.items()]  # type: ignore[arg-type]
        return "&".join(parts).encode()

    def _authorization(self, auth: tuple[str, str]) -> str:
        if self._auth is None or self._auth[0] != auth:
            self._auth = (auth, aiohttp.encode_basic_auth(*auth))
        return self._auth[1]

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()



def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds (the delta-seconds form; an HTTP date is ignored)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error(exc: BaseException, op: str) -> ProviderError:
    """A library or transport failure as a ProviderError (no secrets: the token is never in them)."""
    if isinstance(exc, ProviderError):
        exc.details.setdefault("op", op)
        return exc
    status = getattr(exc, "status", None)
    if isinstance(exc, TwilioException) and status is None and len(exc.args) > 1:
        status = getattr(exc.args[1], "status_code", None)  # "Unable to fetch page", response
    if isinstance(status, int):
        code = getattr(exc, "code", None)
        details: dict[str, Any] = {"op": op, "code": code}
        text = getattr(exc, "msg", None) or getattr(exc, "title", None) or str(exc.args[0] if exc.args else exc)
        return ProviderError(f"twilio {op}: HTTP {status}: {text}", status_code=status, details=details)
    if isinstance(exc, TimeoutError):
        return ProviderError(f"twilio {op}: timed out", error=exc, details={"op": op, "error": "timeout"})
    return ProviderError(
        f"twilio {op}: {type(exc).__name__}", error=exc, details={"op": op, "error": type(exc).__name__}
    )


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return "" if value is None else str(value)


def _parse_since(since_iso: str) -> datetime:
    try:
        since = datetime.fromisoformat(since_iso)
    except ValueError:
        raise ValueError(f"since_iso is not an ISO 8601 time: {since_iso!r}") from None
    return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)


class TwilioProvider:
    """The Provider contract (sms.provider) over Twilio's Messages API."""

    name = "twilio"
    can_list = True
    max_listed = 1000  # find_sent() reads at most this many messages
    list_page_size = 100

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str,
        api_base: str = DEFAULT_API_BASE,
        public_url: str,
        timeout_s: float = 10,
        max_connections: int = 20,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.from_number = from_number
        self.public_url = checked_public_url(public_url)
        self.status_callback = self.public_url + STATUS_PATH
        self.timeout_s = timeout_s
        self._http = _HttpClient(api_base, timeout_s, max_connections)
        # environment={}: TWILIO_EDGE / TWILIO_REGION must not move the API host behind our back
        self._client = Client(account_sid, auth_token, http_client=self._http, environment={})
        self.webhooks = TwilioWebhooks(auth_token, self.public_url)

    def __repr__(self) -> str:  # never the token
        return f"TwilioProvider(account_sid={self._client.account_sid!r}, public_url={self.public_url!r})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, on_receipt: OnReceipt, on_inbound: OnInbound) -> None:
        self.webhooks.start(on_receipt, on_inbound)

    async def stop(self) -> None:
        self.webhooks.stop()
        await self._http.close()

    # --- API ---------------------------------------------------------------------------------

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        """Create the message; `ProviderError` (retryable or not) when Twilio or the wire fails."""
        try:
            message = await self._client.messages.create_async(
                to=to, from_=sender or self.from_number, body=body, status_callback=self.status_callback
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed ProviderError
            error = _error(exc, "send")
            log.warning("twilio_send_failed", message_id=message_id, status_code=error.status_code,
                        code=error.details.get("code"), retryable=error.retryable)
            raise error from exc
        if not message.sid:
            raise ProviderError("twilio send: no sid in the answer", status_code=None,
                                details={"op": "send"})
        if _debug(logging.DEBUG):
            log.debug("twilio_sent", message_id=message_id, provider_id=message.sid, status=message.status)
        return Submitted(provider_id=message.sid, status=str(message.status or ""))

    async def find_sent(self, to: str, since_iso: str) -> list[Remote]:
        """Messages to `to` created at or after `since_iso`, newest first, whatever their status:
        one Twilio accepted but has not sent yet (queued, accepted, scheduled) has no DateSent, so
        no DateSent filter is asked for; the list (newest first) is read until a message created
        before `since_iso`'s second (Twilio keeps whole seconds), at most `max_listed`."""
        since = _parse_since(since_iso).replace(microsecond=0)
        found = []
        try:
            async for m in await self._client.messages.stream_async(
                    to=to, limit=self.max_listed, page_size=self.list_page_size):
                created = m.date_created
                if isinstance(created, datetime) and created.astimezone(UTC) < since:
                    break
                found.append(Remote(provider_id=m.sid, to=m.to, body=m.body or "",
                                    status=str(m.status or ""), created=_iso(created)))
        except Exception as exc:  # noqa: BLE001
            raise _error(exc, "find_sent") from exc
        return found

    # --- webhooks ----------------------------------------------------------------------------

    def webhook_routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return self.webhooks.routes()


def checked_public_url(public_url: str) -> str:
    """`public_url` without a trailing slash; ValueError unless an http(s) URL without a query."""
    public = urlsplit(public_url)
    if public.scheme not in ("http", "https") or not public.netloc or public.query:
        raise ValueError(f"public_url must be an http(s) URL without a query, not {public_url!r}")
    return public_url.rstrip("/")


class TwilioWebhooks:
    """The two webhooks Twilio calls, served in the gateway whichever process makes the API calls
    (sms/twilio_process.py): each request checked with X-Twilio-Signature against our public URL,
    then handed to the callbacks given to `start()` and answered once they have taken it."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        self.public_url = checked_public_url(public_url)
        self._signature = WebhookSignature(auth_token)
        self._on_receipt: OnReceipt | None = None
        self._on_inbound: OnInbound | None = None

    def start(self, on_receipt: OnReceipt, on_inbound: OnInbound) -> None:
        self._on_receipt, self._on_inbound = on_receipt, on_inbound

    def stop(self) -> None:
        self._on_receipt = self._on_inbound = None

    def routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [("POST", STATUS_PATH, self._status_webhook), ("POST", INBOUND_PATH, self._inbound_webhook)]

    async def _verified_form(self, request: web.Request, path: str) -> Any:
        """The form if X-Twilio-Signature matches our public URL for `path` and the form, else None
        (logged). The URL is ours, not the request's Host: a request signed for another URL fails."""
        # Twilio always posts a UTF-8 urlencoded form of text fields: anything else (a multipart
        # body, a file part, bytes that are not UTF-8) is a client error, answered 400 before the
        # signature is computed over it.
        why = None
        if request.content_type != "application/x-www-form-urlencoded":
            why = "not-a-form"
        else:
            try:  # strict: raw or percent-encoded bytes that are not UTF-8 are refused, not replaced
                text = (await request.read()).decode("utf-8")
                pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
            except ValueError:  # UnicodeDecodeError
                why = "not-utf8"
        if why is not None:
            log.warning("twilio_webhook_bad_body", path=request.path, peer=request.remote, why=why)
            raise web.HTTPBadRequest()
        url = self.public_url + path + (f"?{request.query_string}" if request.query_string else "")
        signature = request.headers.get("X-Twilio-Signature")
        if not signature or not self._signature.valid(url, pairs, signature):
            log.warning("twilio_webhook_forged", path=request.path, peer=request.remote,
                        why="no-signature" if not signature else "bad-signature")
            return None
        return MultiDict(pairs)

    async def _status_webhook(self, request: web.Request) -> web.StreamResponse:
        form = await self._verified_form(request, STATUS_PATH)
        if form is None:
            return web.Response(status=403)
        sid, status = form.get("MessageSid"), form.get("MessageStatus")
        if not sid or not status:
            log.warning("twilio_status_incomplete", has_sid=bool(sid), has_status=bool(status))
            return web.Response(status=400)
        receipt = Receipt(provider_id=str(sid), status=str(status),
                          error_code=str(form.get("ErrorCode") or "") or None)
        if _debug(logging.DEBUG):
            log.debug("twilio_receipt", provider_id=receipt.provider_id, status=receipt.status,
                      error_code=receipt.error_code)
        if not await self._handed_over(self._on_receipt, receipt):
            return _retry_later()
        return web.Response(status=204)

    async def _inbound_webhook(self, request: web.Request) -> web.StreamResponse:
        form = await self._verified_form(request, INBOUND_PATH)
        if form is None:
            return web.Response(status=403)
        sid, sender, to = form.get("MessageSid"), form.get("From"), form.get("To")
        if not sid or not sender or not to:
            log.warning("twilio_inbound_incomplete", has_sid=bool(sid), has_from=bool(sender), has_to=bool(to))
            return web.Response(status=400)
        inbound = Inbound(provider_id=str(sid), sender=str(sender), to=str(to), body=str(form.get("Body") or ""))
        log.info("twilio_inbound", provider_id=inbound.provider_id)
        if not await self._handed_over(self._on_inbound, inbound):
            return _retry_later()
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def _handed_over(self, callback: Any, item: Receipt | Inbound) -> bool:
        """Whether the gateway took (stored) `item`; only then is Twilio answered 2xx."""
        try:
            await deliver(callback, item)
        except Exception as exc:  # noqa: BLE001 - not taken: Twilio must send it again
            log.warning("twilio_webhook_not_taken", provider_id=item.provider_id, error=repr(exc))
            return False
        return True


def _retry_later() -> web.Response:
    """Not stored (overloaded, stopping, or the store failed): a 5xx makes Twilio retry."""
    return web.Response(status=503, headers={"Retry-After": "1"})
