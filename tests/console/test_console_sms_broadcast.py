"""The SMS and Broadcast views in headless Chromium against a real gateway and real peers.
SMS through the Twilio stub (signed status callbacks): two recipients, one from the directory and
one typed, both shown delivered in the view; the preview's encoding and segments shown before
sending; a reply (a signed inbound webhook) appears in the incident's timeline. Broadcast: push-to-
talk (Alt+T held) from the console's fake microphone (a sox tone) to two baresip speakers picked
in the view; both record the tone. Screenshots in English and Chinese; axe-core."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.audio import active_span, dominant_frequency
from tests.console.browser import (WAIT_MS, axe_violations, choose_language, screenshot, show, show_view,
                                   sign_in)
from tests.console.test_console_voice import CONSOLE_HZ, browser  # noqa: F401 (fixture)
from tests.gateway.test_broadcast import HEARD, _endpoints, _ended, _target_states
from tests.gateway.test_sms_twilio import twilio_gateway
from tests.peers.baresip import BaresipPhone

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

WAIT_S = WAIT_MS / 1000
LI = "+8613800138000"  # officer-li's number in twilio_gateway's directory
TYPED = "+15551230001"


async def no_serious_violations(page: Any) -> None:
    found = await axe_violations(page)
    assert not found, show(found)


async def test_sms_to_two_recipients_delivered_and_a_reply_in_the_timeline(start_gateway, connect, watch, browser,
                                                                           tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False) as (gw, stub, _, public):
        w = await watch(await connect(gw, "tok-observer"))
        page = await browser.open(gw, bypass_csp=True)  # axe-core is injected
        await sign_in(page, "tok-dispatcher", "dispatcher")
        await show_view(page, "sms")
        for who in ("officer-li", "+1 (555) 123-0001"):
            await page.fill("#sms-recipient", who)
            await page.press("#sms-recipient", "Enter")
        await page.wait_for_selector('.chip[data-recipient="+1 (555) 123-0001"]', timeout=WAIT_MS)
        # Chinese is UCS-2: the preview says so before anything is sent.
        await page.fill("#sms-body", "所有区值班人员到防汛指挥部报到")
        await page.wait_for_selector('#sms-preview[data-encoding="UCS-2"][data-segments="1"]', timeout=WAIT_MS)
        # The gateway's template, listed by sms.templates, filled in: GSM-7.
        await page.select_option("#sms-template", "muster")
        await page.fill("#sms-var-district", "District 3")
        await page.fill("#sms-var-place", "the flood post")
        await page.wait_for_selector('#sms-preview[data-encoding="GSM-7"][data-segments="1"]', timeout=WAIT_MS)
        await page.click("#sms-send")
        for number in (LI, TYPED):
            await page.wait_for_selector(f'.sms-send tr[data-to="{number}"][data-state="delivered"]', timeout=WAIT_MS)
        assert stub.creates == {LI: 1, TYPED: 1}
        sent = [e for e in w.events if e["type"] == "sms.status" and e["data"]["state"] == "delivered"]
        session_id = sent[0]["session_id"]
        assert {e["session_id"] for e in sent} == {session_id}
        await screenshot(page, "sms-en")
        await no_serious_violations(page)

        # The reply lands in the send's incident, which the view selected: shown in its timeline.
        status, _ = await stub.send_inbound(public + "/webhooks/twilio/inbound", LI, "+15005550006", "收到，马上到")
        assert status == 200
        await show_view(page, "incidents")
        reply = page.locator('li.tl-item[data-type="sms.inbound"]')
        await reply.wait_for(timeout=WAIT_MS)
        assert "收到，马上到" in await reply.inner_text() and LI in await reply.inner_text()
        ev = await w.wait(lambda e: e["type"] == "sms.inbound", timeout=WAIT_S)
        assert ev["session_id"] == session_id
        await page.wait_for_selector(f'li.tl-item[data-type="sms.status"]:has-text("{TYPED}")', timeout=WAIT_MS)

        # An observer sees the sends' view and the templates, and can send nothing.
        olga = await browser.open(gw)
        await sign_in(olga, "tok-observer", "observer")
        await show_view(olga, "sms")
        await olga.wait_for_selector('#sms-template option:text-is("muster")', state="attached", timeout=WAIT_MS)
        await olga.fill("#sms-recipient", LI)
        assert await olga.is_disabled("#sms-add") and await olga.is_disabled("#sms-send")
        await show_view(olga, "broadcast")
        assert await olga.is_disabled("#bc-start")
        await olga.context.close()

        await choose_language(page, "zh-CN")
        await show_view(page, "sms")
        await page.wait_for_selector(f'.sms-send tr[data-to="{LI}"]:has-text("已送达")', timeout=WAIT_MS)
        await screenshot(page, "sms-zh-CN")
        await no_serious_violations(page)


@contextlib.asynccontextmanager
async def two_speakers():
    async with BaresipPhone(user="spk-a") as a, BaresipPhone(user="spk-b") as b:
        yield [a, b]


async def test_push_to_talk_to_two_speakers_both_record_it(start_gateway, connect, watch, browser) -> None:
    async with two_speakers() as spk:
        gw = await start_gateway(**HEARD, **{"directory.endpoint": _endpoints(spk, group="hall"),
                                             "broadcast.priorities": '["life-safety", "normal", "routine"]'})
        w = await watch(await connect(gw, "tok-observer"))
        page = await browser.open(gw, bypass_csp=True)  # axe-core is injected
        await sign_in(page, "tok-dispatcher", "dispatcher")
        await show_view(page, "broadcast")
        for name in ("spk-a", "spk-b"):
            await page.check(f'input[name="bc-speakers"][value="{name}"]')
        # The gateway's own priorities (directory.list), not a list built into the console.
        assert await page.eval_on_selector_all("#bc-priority option", "os => os.map(o => o.value)") == [
            "life-safety", "normal", "routine"]
        assert await page.input_value("#bc-priority") == "normal"
        await page.select_option("#bc-priority", "life-safety")
        await page.click("#bc-start")  # source: the microphone (the default)
        for name in ("spk-a", "spk-b"):
            await page.wait_for_selector(f'.bc-item tr[data-target="{name}"][data-state="connected"]', timeout=WAIT_MS)
        started = next(e["data"] for e in w.events if e["type"] == "broadcast.state")
        bid = started["broadcast_id"]
        assert started["priority"] == "life-safety" and started["source"]["type"] == "live"
        await page.wait_for_selector("#bc-ptt", timeout=WAIT_MS)
        assert await page.get_attribute("#bc-mic-level", "data-level") == "0"  # muted until talk

        # Alt+T held = talk: the meter shows the console's tone; released = silence again.
        await page.keyboard.down("Alt")
        await page.keyboard.down("t")
        await page.wait_for_selector('.bc-ptt[data-talking="yes"]', timeout=WAIT_MS)
        await page.wait_for_function("() => Number(document.querySelector('#bc-mic-level')?.dataset.level) > 0.3",
                                     timeout=WAIT_MS)
        await screenshot(page, "broadcast-en")
        await asyncio.sleep(2.5)  # 2.5 s of speech for the speakers to record
        await page.keyboard.up("t")
        await page.keyboard.up("Alt")
        await page.wait_for_selector('.bc-ptt[data-talking="no"]', timeout=WAIT_MS)
        await no_serious_violations(page)
        await choose_language(page, "zh-CN")
        await page.wait_for_selector('#bc-ptt:has-text("按住讲话")', timeout=WAIT_MS)
        await screenshot(page, "broadcast-zh-CN")
        await no_serious_violations(page)

        await page.click(f'.bc-item[data-broadcast="{bid}"] .bc-stop')
        end = await _ended(w, bid)
        await page.wait_for_selector(f'.bc-item[data-broadcast="{bid}"][data-state="ended"]', timeout=WAIT_MS)
        await page.wait_for_selector("#bc-ptt", state="detached", timeout=WAIT_MS)  # the mic closed with it
        for s in spk:
            await s.wait_log("terminated", timeout=WAIT_S)
        recordings = [await s.recording("dec") for s in spk]
    assert end["end_reason"] == "stopped"
    for s, (samples, rate) in zip(spk, recordings):
        assert _target_states(w, bid, s.user)[:2] == ["ringing", "connected"], s.user
        tone = active_span(samples, rate)
        assert len(tone) / rate > 1.5, f"{s.user} recorded only {len(tone) / rate:.2f}s of the console"
        assert abs(dominant_frequency(tone, rate) - CONSOLE_HZ) < 20, s.user
