"""SMS through the whole gateway to Twilio's API as its own spec describes it: gateway -> Prism
(validating proxy) -> a stateful Messages stub, which sends signed status callbacks back to the
gateway's webhooks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.client import RemoteError
from tests.peers.prism import ensure_prism, prism_proxy, repo_root, twilio_spec_for_prism
from tests.peers.sipp import free_port_block
from tests.peers.twilio_stub import twilio_signature, twilio_stub

pytestmark = pytest.mark.peers

SID = "AC" + "fedcba9876543210" * 2
TOKEN = "gw-test-auth-token-8d1f"
BAD = "+15550009999"  # the stub reports it undelivered


@contextlib.asynccontextmanager
async def twilio_gateway(start_gateway, tmp_path, *, via_prism: bool = True, **sets) -> AsyncIterator[tuple]:
    """A gateway sending through Prism to the stub (`prism` is None with `via_prism=False`: the
    stub itself is the API, for tests about webhooks)."""
    async with twilio_stub(SID, TOKEN, bad_numbers=frozenset({BAD})) as stub:
        async with contextlib.AsyncExitStack() as stack:
            prism = None
            if via_prism:
                spec, _ = twilio_spec_for_prism(tmp_path)
                binary = await ensure_prism(repo_root() / ".cache" / "prism")
                prism = await stack.enter_async_context(
                    prism_proxy(binary, spec, stub.url, log=tmp_path / "prism.log"))
            http_port = free_port_block(span=1)
            public = f"http://127.0.0.1:{http_port}"
            gw = await start_gateway(**{
                "http.port": http_port, "sms.provider": "twilio", "sms.rate_per_s": 50, "sms.burst": 10,
                "sms.base_delay_s": 0.2, "sms.max_delay_s": 1, "sms.twilio.account_sid": SID,
                "sms.twilio.auth_token": TOKEN, "sms.twilio.api_base": prism.url if prism else stub.url,
                "sms.twilio.public_url": public, "sms.twilio.timeout_s": 5,
                "sms.templates": '{muster = "All {district} duty officers report to {place}."}',
                "directory.endpoint": '[{name = "officer-li", uri = "tel:+8613800138000", groups = ["d3"]},'
                                      ' {name = "officer-wu", uri = "sip:+8613900139000@127.0.0.1", groups = ["d3"]}]',
                **sets})
            yield gw, stub, prism, public


def _statuses(w, message_id: str) -> list[str]:
    return [e["data"]["state"] for e in w.events if e["type"] == "sms.status"
            and e["data"]["message_id"] == message_id]


async def _final(w, n: int, timeout: float = 20) -> None:
    await w.wait(lambda e: sum(1 for x in w.events if x["type"] == "sms.status"
                               and x["data"]["state"] in ("delivered", "undelivered", "failed")) >= n, timeout)


async def test_send_to_numbers_and_a_group_every_status_reported(start_gateway, connect, watch, tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path) as (gw, stub, prism, _):
        alice = await connect(gw)
        w = await watch(alice)
        preview = await alice.call("sms.preview", body="所有区值班人员到防汛指挥部报到")
        assert (preview["encoding"], preview["segments"]) == ("UCS-2", 1)
        sent = await alice.call("sms.send", to=["+1 (555) 123-0001", "group:d3", BAD],
                                body="所有区值班人员到防汛指挥部报到")
        assert sent["recipients"] == 4 and sent["encoding"] == "UCS-2" and sent["segments"] == 1
        await _final(w, 4)
        got = await alice.call("sms.get", send_id=sent["send_id"])
        by_to = {m["recipient"]: m for m in got["messages"]}
        assert set(by_to) == {"+15551230001", "+8613800138000", "+8613900139000", BAD}
        assert got["counts"] == {"delivered": 3, "undelivered": 1}
        good = by_to["+8613800138000"]
        assert _statuses(w, good["message_id"])[:3] == ["queued", "sending", "sent"]
        assert _statuses(w, good["message_id"])[-1] == "delivered"
        assert _statuses(w, by_to[BAD]["message_id"])[-1] == "undelivered"
        assert stub.creates == {n: 1 for n in by_to}  # one create per recipient, no duplicate
        body = next(iter(stub.messages.values()))["body"]
        assert body == "所有区值班人员到防汛指挥部报到"
        await asyncio.sleep(0.3)
        assert prism.violations() == [], prism.violations()


async def test_template_rate_limit_and_retry(start_gateway, connect, watch, tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path, **{"sms.rate_per_s": 5, "sms.burst": 1}) as (gw, stub, _, _):
        alice = await connect(gw)
        w = await watch(alice)
        stub.fail_next(2, status=429)
        numbers = [f"+1555123{i:04d}" for i in range(10)]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = await alice.call("sms.send", to=numbers, template="muster",
                                variables={"district": "third", "place": "the flood post"})
        await _final(w, 10, timeout=30)
        elapsed = loop.time() - t0
        assert sum(stub.creates.values()) == 10 and stub.create_attempts == 12
        assert elapsed >= 9 / 5 * 0.9, f"10 messages at 5/s took only {elapsed:.2f}s"
        retried = [e for e in w.events if e["type"] == "sms.status" and e["data"].get("retry_in_s") is not None]
        assert len(retried) == 2 and all(e["data"]["status_code"] == 429 for e in retried)
        assert next(iter(stub.messages.values()))["body"] == "All third duty officers report to the flood post."
        assert (await alice.call("sms.get", send_id=sent["send_id"]))["counts"] == {"delivered": 10}


async def test_reply_lands_in_the_incident_that_messaged_that_number(start_gateway, connect, watch,
                                                                      tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path) as (gw, stub, _, public):
        alice = await connect(gw)
        w = await watch(alice)
        incident = await alice.call("session.create", title="Flood, district 3")
        await alice.call("sms.send", to=["officer-li"], body="Report to the flood post",
                         session_id=incident["session_id"])
        await _final(w, 1)
        status, _ = await stub.send_inbound(public + "/webhooks/twilio/inbound", "+8613800138000",
                                            "+15005550006", "收到")
        assert status == 200
        ev = await w.wait(lambda e: e["type"] == "sms.inbound")
        assert ev["session_id"] == incident["session_id"] and ev["data"]["body"] == "收到"
        # A number nobody messaged opens a session of its own.
        await stub.send_inbound(public + "/webhooks/twilio/inbound", "+8613700137000", "+15005550006", "?")
        other = await w.wait(lambda e: e["type"] == "sms.inbound" and e["data"]["from"] == "+8613700137000")
        assert other["session_id"] not in (None, incident["session_id"])


async def test_forged_webhooks_are_rejected_and_change_nothing(start_gateway, connect, watch, tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path) as (gw, stub, _, public):
        alice = await connect(gw)
        w = await watch(alice)
        url = public + "/webhooks/twilio/inbound"
        form = {"From": "+8613800138000", "To": "+15005550006", "Body": "forged", "MessageSid": "SM" + "0" * 32}
        async with aiohttp.ClientSession() as http:
            cases = [
                {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},  # wrong signature
                {"X-Twilio-Signature": twilio_signature(TOKEN, url, {**form, "Body": "original"})},  # tampered
                {"X-Twilio-Signature": twilio_signature(TOKEN, "https://elsewhere.example/hook", form)},  # replayed
                {},  # unsigned
            ]
            for headers in cases:
                async with http.post(url, data=form, headers=headers) as r:
                    assert r.status == 403, headers
            status_form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}
            async with http.post(public + "/webhooks/twilio/status", data=status_form,
                                 headers={"X-Twilio-Signature": "AAAA"}) as r:
                assert r.status == 403
        await asyncio.sleep(0.5)
        assert not [e for e in w.events if e["type"] in ("sms.inbound", "sms.status")]


async def test_bad_sms_requests_queue_nothing(start_gateway, connect, tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path) as (gw, stub, _, _):
        alice = await connect(gw)
        unit = await connect(gw, "tok-terminal")
        cases = [
            ({"to": [], "body": "x"}, "no-recipients"),
            ({"to": ["12345"], "body": "x"}, "invalid-number"),
            ({"to": ["+0123456789"], "body": "x"}, "invalid-number"),
            ({"to": ["+15551230001"], "body": "   "}, "empty-body"),
            ({"to": ["+15551230001"], "template": "muster", "variables": {"district": "3"}}, "unknown-variable"),
            ({"to": ["+15551230001"], "template": "nope"}, "unknown-template"),
            ({"to": ["+15551230001"], "body": "長" * 700}, "too-many-segments"),
            ({"to": ["nobody"], "body": "x"}, "no-such-endpoint"),
        ]
        for params, reason in cases:
            with pytest.raises(RemoteError) as err:
                await alice.call("sms.send", **params)
            assert err.value.reason == reason, params
        with pytest.raises(RemoteError) as err:
            await unit.call("sms.send", to=["+15551230001"], body="x")
        assert err.value.reason == "forbidden"
        assert await gw.store.find_sms() == [] and stub.create_attempts == 0


async def test_malformed_webhook_bodies_get_400_without_a_traceback(start_gateway, tmp_path) -> None:
    """Unauthenticated junk (a multipart file part with a signature header, a form that is not
    UTF-8) is a client error: 400 without a traceback, and the gateway keeps answering."""
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False) as (gw, stub, _, public):
        async with aiohttp.ClientSession() as http:
            for path in ("/webhooks/twilio/inbound", "/webhooks/twilio/status"):
                multipart = aiohttp.FormData()
                multipart.add_field("MessageSid", "SM" + "2" * 32)
                multipart.add_field("upload", b"\x00\xffbinary", filename="x.bin",
                                    content_type="application/octet-stream")
                async with http.post(public + path, data=multipart,
                                     headers={"X-Twilio-Signature": "AAAA"}) as r:
                    assert r.status == 400, (path, "multipart", await r.text())
                    assert "Traceback" not in await r.text()
                for body in (b"From=%FF%FE&Body=x", b"From=\xff\xfe&Body=\xc3(", b"\xff=\xfe"):
                    async with http.post(public + path, data=body,
                                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                                  "X-Twilio-Signature": "AAAA"}) as r:
                        assert r.status == 400, (path, body, await r.text())
                        assert "Traceback" not in await r.text()
            async with http.get(public + "/healthz") as r:
                assert r.status == 200


async def test_sender_must_be_a_configured_sender(start_gateway, connect, watch, tmp_path) -> None:
    """Any E.164 `sender` used to be sent as From: a dispatcher could spoof a number and dodge the
    per-sender rate. Only `sms.sender` and `sms.senders` may be named (issue 8 §1)."""
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False,
                              **{"sms.senders": '["+15005550007"]'}) as (gw, stub, _, _):
        alice = await connect(gw)
        w = await watch(alice)
        for spoof in ("+15550001234", "+1 (555) 000-1234", "+15005550008"):
            with pytest.raises(RemoteError) as info:
                await alice.call("sms.send", to=["+15551230001"], body="evacuate", sender=spoof)
            assert info.value.reason == "sender-not-allowed" and info.value.code == -32602, info.value
            assert info.value.details["allowed"] == ["+15005550006", "+15005550007"]
        assert stub.create_attempts == 0
        await alice.call("sms.send", to=["+15551230001"], body="one", sender="+1 500 555 0007")
        await alice.call("sms.send", to=["+15551230002"], body="two")
        await _final(w, 2)
        assert sorted(m["from"] for m in stub.messages.values()) == ["+15005550006", "+15005550007"]


async def test_templates_are_listed_with_their_variables(start_gateway, connect, tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False,
                              **{"sms.templates": '{muster = "All {district} duty officers report to {place}.",'
                                                  ' bad = "report {a.b}"}'}) as (gw, *_):
        listed = await (await connect(gw, "tok-observer")).call("sms.templates")
    assert listed == {"templates": [
        {"name": "bad", "text": "report {a.b}", "variables": None},
        {"name": "muster", "text": "All {district} duty officers report to {place}.", "variables": ["district", "place"]}]}
