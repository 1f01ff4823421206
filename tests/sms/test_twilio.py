"""TwilioProvider against Twilio's own OpenAPI description: provider -> Prism (validating proxy,
--errors) -> a stateful Messages API stub, with the stub's signed status callbacks and inbound
messages reaching an aiohttp app that hosts the provider's webhook routes.

Prism starts once per session (it loads Twilio's 1.8 MB spec); the stub is reset before each test.
Every test ends by asserting that Prism saw no spec violation.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator

from sms.provider import Inbound, ProviderError, Receipt, Submitted
from sms.twilio import INBOUND_PATH, STATUS_PATH, TwilioProvider
from tests.peers.ports import free_tcp_port
from tests.peers.prism import PrismProxy, ensure_prism, prism_proxy, repo_root, twilio_spec_for_prism
from tests.peers.twilio_stub import TwilioStub, twilio_signature, twilio_stub

pytestmark = [pytest.mark.peers, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(60)]

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "stub-auth-token-5f1c9e2a7b"
SENDER = "+15005550006"
GOOD = "+15551230001"
OTHER = "+15551230002"
BAD = "+15550009999"  # the stub reports it undelivered (30003)
SM_SID = re.compile(r"^SM[0-9a-f]{32}$")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stub() -> AsyncIterator[TwilioStub]:
    async with twilio_stub(SID, TOKEN, bad_numbers=frozenset({BAD})) as s:
        yield s


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def prism(stub: TwilioStub, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrismProxy]:
    workdir = tmp_path_factory.mktemp("prism")
    spec, errata = twilio_spec_for_prism(workdir)
    assert len(errata) <= 4, errata  # only the documented page-URI formats, nothing else
    binary = await ensure_prism(repo_root() / ".cache" / "prism")
    async with prism_proxy(binary, spec, stub.url, log=workdir / "prism.log") as proxy:
        yield proxy


@dataclass
class Harness:
    provider: TwilioProvider
    stub: TwilioStub
    prism: PrismProxy
    public_url: str
    http: aiohttp.ClientSession
    receipts: list[Receipt] = field(default_factory=list)
    inbound: list[Inbound] = field(default_factory=list)
    mark: int = 0

    def make_provider(self, **overrides: object) -> TwilioProvider:
        options: dict = dict(from_number=SENDER, api_base=self.prism.url, public_url=self.public_url, timeout_s=5)
        options.update(overrides)
        return TwilioProvider(SID, TOKEN, **options)

    async def assert_no_violations(self) -> None:
        """Prism logs a violation just after it answers: give it a moment, then read its log."""
        await asyncio.sleep(0.2)
        assert self.prism.violations(self.mark) == [], self.prism.text()[self.mark:]

    async def receipts_for(self, provider_id: str, n: int, timeout: float = 5.0) -> list[Receipt]:
        async with asyncio.timeout(timeout):
            while len(got := [r for r in self.receipts if r.provider_id == provider_id]) < n:
                await asyncio.sleep(0.02)
        return got


@pytest_asyncio.fixture(loop_scope="session")
async def sms(stub: TwilioStub, prism: PrismProxy) -> AsyncIterator[Harness]:
    stub.reset()
    port = free_tcp_port()
    public_url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        h = Harness(provider=None, stub=stub, prism=prism, public_url=public_url, http=http)  # type: ignore[arg-type]
        h.provider = h.make_provider()
        runner = await serve_webhooks(h.provider, port)
        await h.provider.start(h.receipts.append, h.inbound.append)
        h.mark = prism.mark()
        try:
            yield h
        finally:
            await h.provider.stop()
            await runner.cleanup()
            stub.reset()


async def serve_webhooks(provider: object, port: int) -> web.AppRunner:
    """An aiohttp app on 127.0.0.1:`port` with `provider`'s webhook routes (cleanup() ends it)."""
    app = web.Application()
    for method, path, handler in provider.webhook_routes():  # type: ignore[attr-defined]
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


# --- the API through Prism ---------------------------------------------------------------------


async def test_send_then_status_callbacks_become_receipts(sms: Harness) -> None:
    submitted = await sms.provider.send("m-1", SENDER, GOOD, "Evacuate zone B")
    assert isinstance(submitted, Submitted) and SM_SID.match(submitted.provider_id)
    assert submitted.status == "queued"
    receipts = await sms.receipts_for(submitted.provider_id, 3)
    assert [r.status for r in receipts] == ["queued", "sent", "delivered"]
    assert all(r.error_code is None for r in receipts)
    assert {answer for _, _, answer in sms.stub.callbacks} == {204}
    assert sms.stub.creates == {GOOD: 1}
    assert 'Forwarding "post" request' in sms.prism.text()[sms.mark:]  # it went through Prism
    stored = sms.stub.messages[submitted.provider_id]
    assert (stored["from"], stored["body"]) == (SENDER, "Evacuate zone B")
    await sms.assert_no_violations()


async def test_a_create_encodes_its_form_once_and_builds_no_form_data(
        sms: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The create's form goes out as one urlencoded body made by the provider: aiohttp built a
    FormData (and a multipart writer) from the library's dict for every create. Prism checks the
    request against the API's spec as before; the body is the same."""
    built = []

    class Counted(aiohttp.client_reqrep.FormData):  # type: ignore[name-defined]
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(1)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiohttp.client_reqrep, "FormData", Counted)
    for i in range(3):
        submitted = await sms.provider.send(f"m-{i}", SENDER, GOOD, "caf\u00e9 & 5 > 4 \u4f60\u597d")
        stored = sms.stub.messages[submitted.provider_id]
        assert (stored["from"], stored["to"], stored["body"]) == (SENDER, GOOD, "caf\u00e9 & 5 > 4 \u4f60\u597d")
    assert [r.status for r in await sms.receipts_for(submitted.provider_id, 3)] == ["queued", "sent", "delivered"]
    assert built == []
    await sms.assert_no_violations()


async def test_a_create_arms_one_deadline_not_one_of_aiohttp_s_as_well(
        sms: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's deadline (`timeout_s`, asyncio.timeout around the whole request) is the
    only timer: the session's ClientTimeout armed a second one per create for the same bound.
    The deadline itself is still kept (test_timeout_is_retryable_and_find_sent_reconciles)."""
    armed = []
    start = aiohttp.helpers.TimeoutHandle.start

    def counted(handle: aiohttp.helpers.TimeoutHandle) -> object:
        timer = start(handle)
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_filename.endswith("sms/twilio.py"):
            frame = frame.f_back  # type: ignore[assignment]
        if timer is not None and frame is not None:  # one of our requests (not the stub's callbacks)
            armed.append(timer)
        return timer

    monkeypatch.setattr(aiohttp.helpers.TimeoutHandle, "start", counted)
    for i in range(5):
        await sms.provider.send(f"m-{i}", SENDER, GOOD, "one timer")
    assert armed == []


async def test_concurrent_sends_share_one_pool_as_wide_as_the_in_flight_limit(sms: Harness) -> None:
    """30 creates at once through a provider with 4 connections: they queue for the pool and
    reuse its connections (the stub sees at most 4 client ports), not a connection each."""
    provider = sms.make_provider(api_base=sms.stub.url, max_connections=4)
    await provider.start(sms.receipts.append, sms.inbound.append)
    try:
        sent = await asyncio.gather(*(provider.send(f"m-{i}", SENDER, f"+1555123{i:04d}", "pool")
                                      for i in range(30)))
        sent += [await provider.send("m-last", SENDER, GOOD, "pool")]  # a kept-alive one is reused
    finally:
        await provider.stop()
    assert len({s.provider_id for s in sent}) == 31
    assert 1 <= len(sms.stub.api_peers) <= 4, sms.stub.api_peers


async def test_bad_number_is_reported_undelivered(sms: Harness) -> None:
    submitted = await sms.provider.send("m-2", SENDER, BAD, "hello")
    receipts = await sms.receipts_for(submitted.provider_id, 3)
    assert [r.status for r in receipts] == ["queued", "sent", "undelivered"]
    assert receipts[-1].error_code == "30003"
    await sms.assert_no_violations()


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttling_and_server_errors_are_retryable(sms: Harness, status: int) -> None:
    sms.stub.fail_next(1, status)
    with pytest.raises(ProviderError) as info:
        await sms.provider.send("m-3", SENDER, GOOD, "hello")
    err = info.value
    assert (err.status_code, err.retryable, err.reason) == (status, True, "provider-error")
    assert sms.stub.creates[GOOD] == 0
    await sms.provider.send("m-3", SENDER, GOOD, "hello")  # the retry goes through, once
    assert sms.stub.creates == {GOOD: 1}
    await sms.assert_no_violations()


async def test_invalid_to_is_permanent(sms: Harness) -> None:
    with pytest.raises(ProviderError) as info:
        await sms.provider.send("m-4", SENDER, "+1555", "hello")
    err = info.value
    assert (err.status_code, err.retryable, err.details["code"]) == (400, False, 21211)
    assert TOKEN not in str(err) and TOKEN not in repr(err.details)
    assert sum(sms.stub.creates.values()) == 0
    await sms.assert_no_violations()


async def test_timeout_is_retryable_and_find_sent_reconciles(sms: Harness) -> None:
    provider = sms.make_provider(timeout_s=1)
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    sms.stub.delay_next(1, 3.0)  # stored at once, answered after our deadline
    try:
        started = datetime.now(UTC)
        with pytest.raises(ProviderError) as info:
            await provider.send("m-5", SENDER, GOOD, "hello")
        assert (datetime.now(UTC) - started).total_seconds() < 2.5
        assert (info.value.status_code, info.value.retryable) == (None, True)
        assert info.value.details["error"] == "timeout"
        # Twilio took it anyway: reconciliation finds it, so the outbox does not send it again
        found = await provider.find_sent(GOOD, since.isoformat())
        assert [(r.to, r.body) for r in found] == [(GOOD, "hello")]
        assert sms.stub.creates == {GOOD: 1}
    finally:
        await provider.stop()
    await sms.assert_no_violations()


async def test_find_sent_finds_a_message_accepted_but_not_sent_yet(sms: Harness) -> None:
    """Twilio lists a queued/accepted message with no DateSent: a DateSent filter misses it, and
    after a timed-out create the outbox would send it a second time."""
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    sms.stub.stall_next(1)  # stored, answered, but stays `queued` (not sent)
    sub = await sms.provider.send("m-q", SENDER, GOOD, "still queued at Twilio")
    assert sms.stub.messages[sub.provider_id]["date_sent"] is None
    found = await sms.provider.find_sent(GOOD, since.isoformat())
    assert [(r.provider_id, r.status) for r in found] == [(sub.provider_id, "queued")]
    sms.stub.release_stalled()
    await sms.assert_no_violations()


async def test_retry_after_of_a_429_is_kept(sms: Harness) -> None:
    sms.stub.fail_next(1, 429, retry_after=7)
    with pytest.raises(ProviderError) as info:
        await sms.provider.send("m-ra", SENDER, GOOD, "hello")
    assert (info.value.status_code, info.value.retryable, info.value.maybe_sent) == (429, True, False)
    assert info.value.details["retry_after_s"] == 7.0
    await sms.assert_no_violations()


async def test_find_sent_lists_by_recipient_and_time(sms: Harness) -> None:
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    sent = [await sms.provider.send(f"m-{i}", SENDER, GOOD, f"msg {i}") for i in range(3)]
    await sms.provider.send("m-x", SENDER, OTHER, "not for GOOD")
    sms.provider.list_page_size = 2  # three messages: two pages, the second via next_page_uri
    found = await sms.provider.find_sent(GOOD, since.isoformat())
    assert {r.provider_id for r in found} == {s.provider_id for s in sent}
    assert {r.body for r in found} == {"msg 0", "msg 1", "msg 2"}
    assert all(r.to == GOOD and r.status for r in found)
    assert all(datetime.fromisoformat(r.created) >= since for r in found)
    assert sum("Page=1" in path for _, path in sms.stub.requests) == 1
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert await sms.provider.find_sent(GOOD, later) == []
    assert await sms.provider.find_sent("+15559990000", since.isoformat()) == []
    await sms.assert_no_violations()


async def test_prism_refuses_what_breaks_the_spec(sms: Harness) -> None:
    """The canary: a create without `To` never reaches the stub, and it shows as a violation."""
    url = f"{sms.prism.url}/2010-04-01/Accounts/{SID}/Messages.json"
    async with sms.http.post(url, data={"From": SENDER, "Body": "x"},
                              headers={"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}) as resp:
        assert resp.status == 422
    assert sms.stub.create_attempts == 0
    async with asyncio.timeout(3):
        while not (seen := sms.prism.violations(sms.mark)):
            await asyncio.sleep(0.05)
    assert "UNPROCESSABLE_ENTITY" in seen[0]
    sms.mark = sms.prism.mark()


# --- webhooks ------------------------------------------------------------------------------------


async def test_inbound_webhook_becomes_inbound(sms: Harness) -> None:
    status, body = await sms.stub.send_inbound(sms.public_url + INBOUND_PATH, GOOD, SENDER, "Need help at gate 3")
    assert status == 200 and "<Response/>" in body
    assert len(sms.inbound) == 1
    got = sms.inbound[0]
    assert (got.sender, got.to, got.body) == (GOOD, SENDER, "Need help at gate 3")
    assert SM_SID.match(got.provider_id)


def _status_params(sid: str, status: str) -> dict[str, str]:
    return {"AccountSid": SID, "MessageSid": sid, "MessageStatus": status, "To": GOOD, "From": SENDER,
            "ApiVersion": "2010-04-01"}


async def test_forged_webhooks_get_403_and_are_not_acted_on(sms: Harness) -> None:
    status_url, inbound_url = sms.public_url + STATUS_PATH, sms.public_url + INBOUND_PATH
    sid = "SM" + "ab" * 16
    signed = _status_params(sid, "failed")
    inbound = {"MessageSid": sid, "From": GOOD, "To": SENDER, "Body": "fake", "AccountSid": SID}
    with capture_logs() as logs:
        answers = [
            # a wrong signature (another token)
            await sms.stub.post_signed(status_url, signed, signature=twilio_signature("not-the-token", status_url, signed)),
            # no signature at all
            await sms.stub.post_signed(status_url, signed, signature=""),
            # a real signature, a tampered body
            await sms.stub.post_signed(status_url, {**signed, "MessageStatus": "delivered"},
                                       signature=twilio_signature(TOKEN, status_url, signed)),
            # a parameter added after signing
            await sms.stub.post_signed(status_url, {**signed, "ErrorCode": "30003"},
                                       signature=twilio_signature(TOKEN, status_url, signed)),
            # replayed to another of our URLs
            await sms.stub.post_signed(inbound_url, inbound, sign_url=status_url),
            # signed for another site's URL, sent to ours
            await sms.stub.post_signed(status_url, signed, sign_url="https://evil.example/webhooks/twilio/status"),
            await sms.stub.post_signed(inbound_url, inbound, sign_url="https://evil.example" + INBOUND_PATH),
        ]
    assert [status for status, _ in answers] == [403] * 7
    assert sms.receipts == [] and sms.inbound == []
    forged = [e for e in logs if e["event"] == "twilio_webhook_forged"]
    assert len(forged) == 7
    text = repr(logs)
    assert TOKEN not in text and twilio_signature(TOKEN, status_url, signed) not in text
    # and the genuine one still works
    status, _ = await sms.stub.post_signed(status_url, signed)
    assert status == 204 and sms.receipts == [Receipt(sid, "failed")]


async def test_webhook_body_that_is_not_utf8_gets_400_not_500(sms: Harness) -> None:
    sig = twilio_signature(TOKEN, sms.public_url + INBOUND_PATH, {})
    for body in (b"MessageSid=SM1&From=%2B1&To=%2B2&Body=caf\xe9", b"\xff\xfe"):
        for path in (INBOUND_PATH, STATUS_PATH):
            async with sms.http.post(sms.public_url + path, data=body, headers={
                    "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"}) as resp:
                assert resp.status == 400, (path, body)
    assert sms.receipts == [] and sms.inbound == []


async def test_stub_signature_matches_the_library_validator() -> None:
    """The stub signs with its own implementation; the library agrees (and rejects a change)."""
    url = "https://gw.example.com/webhooks/twilio/status"
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": "+15551230001", "ErrorCode": ""}
    sig = twilio_signature(TOKEN, url, params)
    validator = RequestValidator(TOKEN)
    assert sig == validator.compute_signature(url, params)
    assert validator.validate(url, params, sig)
    assert not validator.validate(url, {**params, "MessageStatus": "failed"}, sig)


async def test_per_message_debug_lines_are_not_built_unless_debug_is_on(
        sms: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A create and its three callbacks each had a debug line, which structlog built (a bound
    logger, its processors) only to drop at the default level: 4 calls a message before, none
    now; with debug on for this module they are logged as before."""
    import logging

    import structlog

    import sms.twilio as module

    calls: list[str] = []
    real = structlog.get_logger("sms.twilio")

    class Counting:
        def __getattr__(self, name: str) -> object:
            method = getattr(real, name)

            def counted(*a: object, **k: object) -> object:
                calls.append(name)
                return method(*a, **k)
            return counted

    monkeypatch.setattr(module, "log", Counting())
    caplog.set_level(logging.INFO, logger="sms.twilio")
    submitted = await sms.provider.send("m-quiet", SENDER, GOOD, "quiet")
    await sms.receipts_for(submitted.provider_id, 3)
    assert calls == []
    caplog.set_level(logging.DEBUG, logger="sms.twilio")
    submitted = await sms.provider.send("m-debug", SENDER, GOOD, "debug")
    await sms.receipts_for(submitted.provider_id, 3)
    assert calls == ["debug"] * 4


async def test_the_create_form_is_what_urlencode_makes_with_each_text_quoted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's form encoder quotes a text once and keeps it (an alert's From, body and
    callback URL are the same for every create): the bytes are urlencode(data, doseq=True)'s."""
    from urllib.parse import quote_plus, urlencode

    import sms.twilio as module

    quoted = []
    monkeypatch.setattr(module, "quote_plus", lambda text: quoted.append(text) or quote_plus(text))
    http = module._HttpClient("http://127.0.0.1:9", 5)
    forms = [{"To": f"+1555123{i:04d}", "From": SENDER, "Body": "caf\u00e9 & 5 > 4 \u4f60 a+b=c %20",
              "StatusCallback": "http://127.0.0.1:8080/webhooks/twilio/status?x=1&y=2"} for i in range(50)]
    for form in forms:
        assert http._form(form) == urlencode(form, doseq=True).encode()
    assert len(quoted) == 8 + 49  # the first form whole, then each To
    lists = {"To": ["+1", "+2"], "Flag": True}
    assert http._form(lists) == urlencode(lists, doseq=True).encode()  # anything but text: urlencode itself
