"""The dispatch console in headless Chromium (Debian's, through Playwright) against a real
gateway: a dispatcher signs in, creates an incident and sees it in the timeline with what
happens in it (a terminal's photo shown, its voice note playable), closes it; the directory lists phones, speakers, zones, terminals with their
presence, groups, and searches; an observer sees everything with every command disabled, and
the gateway refuses the command anyway; a cut link is resumed from the last seq, each missed
event shown once, none twice (compared with the store); Health shows the two indicators of the last
day (kpi.get). Screenshots of each view in English and
Chinese go to artefacts/console/; axe-core finds no serious or critical violation."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.console.browser import (WAIT_MS, ConsoleBrowser, axe_violations, choose_language, console_chromium, screenshot,
                                   show, show_view, sign_in)
from tests.peers.chromium import poll_until
from tests.peers.cutproxy import CutProxy
from tests.uploads.samples import make_samples

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]  # a whole gateway (SIP workers) and Chromium

ENDPOINTS = (
    '[{name = "desk-1", uri = "sip:desk1@127.0.0.1:5999", kind = "phone", groups = ["dispatch"], display_name = "Desk 1"},'
    ' {name = "yard", uri = "sip:yard@127.0.0.1:5998", kind = "speaker", groups = ["yard", "all"]},'
    ' {name = "unit-7", kind = "terminal", display_name = "Unit 7", groups = ["field"], phone = "+8613800138007"},'
    ' {name = "unit-9", kind = "terminal", groups = ["field"], phone = "+8613800138009"}]'
)
ZONES = '[{name = "district-3", group = "239.10.0.3", port = 5004, codec = "PCMU", interface = "127.0.0.1"}]'
SETTINGS = {"directory.endpoint": ENDPOINTS, "broadcast.zone": ZONES}


@pytest_asyncio.fixture
async def browser(console_dist) -> AsyncIterator[ConsoleBrowser]:
    async with console_chromium() as b:
        yield b


async def instruct(client: Any, session_id: str, text: str) -> dict:
    """One stored event in the incident: an instruction queued for an offline terminal."""
    return await client.call("terminal.instruct", targets=["unit-9"], text=text, session_id=session_id,
                             fallback="none")


async def create_incident(page: Any, title: str) -> str:
    await page.fill("#incident-title", title)
    await page.click("#incident-create")
    head = page.locator(f'#incident-current:has-text("{title}")')
    await head.wait_for(timeout=WAIT_MS)
    return await head.get_attribute("data-session")


async def timeline_seqs(page: Any) -> list[int]:
    return [int(s) for s in await page.locator("ol.timeline-list > li").evaluate_all("els => els.map(e => e.dataset.seq)")]


async def test_dispatcher_incident_timeline_directory_screenshots_accessibility(start_gateway, connect, browser,
                                                                             tmp_path) -> None:
    gw = await start_gateway(**SETTINGS)
    alice = await connect(gw)
    page = await browser.open(gw, lang="zh-CN")
    await screenshot(page, "signin-zh-CN")
    await choose_language(page, "en")
    violations = await axe_violations_of(browser, gw, page_name="signin")
    assert not violations, show(violations)
    await screenshot(page, "signin-en")
    await sign_in(page, "tok-dispatcher", "dispatcher")
    assert "alice" in await page.inner_text("#principal")

    sid = await create_incident(page, "Flood at pier 4")
    assert page.url.endswith(f"#/incidents/{sid}")  # the selected incident is in the URL
    opened = page.locator('ol.timeline-list > li[data-type="session.state"]')
    await opened.wait_for(timeout=WAIT_MS)
    assert "Flood at pier 4" in await opened.inner_text()
    assert [s["session_id"] for s in (await alice.call("session.list", state="open"))["sessions"]] == [sid]
    # What happens in the incident appears in its timeline, in the store's order.
    await instruct(alice, sid, "Close the east gate")
    row = page.locator('ol.timeline-list > li[data-type="terminal.instruction"]')
    await row.wait_for(timeout=WAIT_MS)
    assert "unit-9" in await row.inner_text() and "queued" in await row.inner_text()
    stored = [e.seq for e in await gw.store.events_after(0, 1000) if e.session_id == sid]
    assert await timeline_seqs(page) == stored
    # Feedback from the field: its photo shown and its voice note playable, both fetched with
    # the console's token (GET /v1/uploads/<sha256>), from blob: URLs the page's CSP allows.
    samples = make_samples(tmp_path, ("image/jpeg", "audio/ogg"))  # real files made by ffmpeg
    unit7 = await connect(gw, "tok-terminal")
    ids = []
    async with aiohttp.ClientSession() as http:
        for kind in ("image/jpeg", "audio/ogg"):
            async with http.post(f"http://127.0.0.1:{gw.http_port}/v1/uploads", data=samples[kind],
                                 headers={"Authorization": "Bearer tok-terminal", "Content-Type": kind}) as r:
                assert r.status == 201, await r.text()
                ids.append((await r.json())["sha256"])
    await unit7.call("terminal.feedback", text="Water at the door", uploads=ids, session_id=sid)
    await unit7.close()
    await page.locator("ol.timeline-list img.tl-photo").wait_for(timeout=WAIT_MS)
    await page.wait_for_function("() => { const i = document.querySelector('img.tl-photo');"
                                 " return i && i.complete && i.naturalWidth === 64; }", timeout=WAIT_MS)
    await page.wait_for_function("() => { const a = document.querySelector('audio.tl-audio');"
                                 " return a && a.duration > 0.3; }", timeout=WAIT_MS)
    assert "Water at the door" in await page.inner_text('ol.timeline-list > li[data-type="terminal.feedback"]')
    await screenshot(page, "incidents-en")

    # The directory: every kind, zones, groups, presence live, search.
    await page.keyboard.press("Alt+2")  # the shortcut of the second view
    await page.wait_for_selector('nav a[data-view="directory"][aria-current="page"]', timeout=WAIT_MS)
    assert await page.evaluate("document.activeElement.id") == "main"  # focus follows the switch
    for section, name in (("phones", "desk-1"), ("speakers", "yard"), ("zones", "district-3"),
                          ("terminals", "unit-7"), ("groups", "field")):
        await page.wait_for_selector(f'[data-section="{section}"] tr[data-name="{name}"]', timeout=WAIT_MS)
    await page.wait_for_selector('tr[data-name="unit-7"] [data-presence="offline"]', timeout=WAIT_MS)
    unit7 = await connect(gw, "tok-terminal")  # the terminal signs in: online at once on screen
    await page.wait_for_selector('tr[data-name="unit-7"] [data-presence="online"]', timeout=WAIT_MS)
    await unit7.close()
    await page.wait_for_selector('tr[data-name="unit-7"] [data-presence="offline"]', timeout=WAIT_MS)
    await page.fill("#directory-search", "yard")
    await page.wait_for_selector('[data-section="phones"] tr[data-name="desk-1"]', state="detached", timeout=WAIT_MS)
    assert await page.locator('[data-section="speakers"] tr[data-name="yard"]').count() == 1
    await page.fill("#directory-search", "")
    await screenshot(page, "directory-en")
    violations = await axe_violations_of(browser, gw, page_name="directory")
    assert not violations, show(violations)

    # Chinese: every view again.
    await choose_language(page, "zh-CN")
    assert await page.inner_text('nav a[data-view="incidents"]') == "事件"
    await screenshot(page, "directory-zh-CN")
    await show_view(page, "incidents")
    await page.click(f'.incident-item[data-session="{sid}"]')
    await screenshot(page, "incidents-zh-CN")
    await show_view(page, "incidents")

    # Close it: the close is in the timeline; the list moves it away from the open ones.
    await page.click("#incident-close")
    closed = page.locator('ol.timeline-list > li[data-type="session.state"]').nth(1)
    await closed.wait_for(timeout=WAIT_MS)
    assert (await alice.call("session.get", session_id=sid))["state"] == "closed"
    await page.wait_for_selector("#incident-close[disabled]", timeout=WAIT_MS)
    await choose_language(page, "en")


async def axe_violations_of(browser: ConsoleBrowser, gw: Any, page_name: str) -> list[dict]:
    """axe-core in a context of its own (its script needs the CSP bypassed; the page under test
    keeps its CSP, so a violation there still fails the test)."""
    page = await browser.open(gw, bypass_csp=True)
    try:
        if page_name != "signin":
            await sign_in(page, "tok-dispatcher", "dispatcher")
            await show_view(page, page_name)
        return await axe_violations(page)
    finally:
        await page.context.close()


async def test_accessibility_and_focus_order_of_the_incidents_view(start_gateway, connect, browser) -> None:
    gw = await start_gateway(**SETTINGS)
    alice = await connect(gw)
    sid = (await alice.call("session.create", title="Gas leak"))["session_id"]
    await instruct(alice, sid, "Evacuate block C")
    for lang in ("en", "zh-CN"):
        page = await browser.open(gw, lang=lang, bypass_csp=True)
        await sign_in(page, "tok-dispatcher", "dispatcher")
        await page.click(f'.incident-item[data-session="{sid}"]')
        await page.wait_for_selector('ol.timeline-list > li[data-type="terminal.instruction"]', timeout=WAIT_MS)
        violations = await axe_violations(page)
        assert not violations, show(violations)
        if lang == "en":
            # Tab order: skip link, the header's controls, the navigation, then the view.
            order = []
            for _ in range(14):
                await page.keyboard.press("Tab")
                order.append(await page.evaluate(
                    "() => { const e = document.activeElement; return e.id || e.dataset.view || e.className || e.tagName; }"))
            want = ["skip", "lang", "signout", "incidents", "directory", "incident-title"]
            assert [x for x in order if x in want] == want, order
        await page.context.close()


async def test_observer_sees_everything_commands_nothing(start_gateway, connect, browser) -> None:
    gw = await start_gateway(**SETTINGS)
    alice = await connect(gw)
    sid = (await alice.call("session.create", title="Road closure"))["session_id"]
    page = await browser.open(gw, fragment=f"#/incidents/{sid}")  # a link to the incident
    # A bad token first: refused with a clear message, still on the sign-in form.
    await page.fill("#token", "not-a-token")
    await page.click("#signin-button")
    await page.wait_for_selector("#signin-error:has-text('refused')", timeout=WAIT_MS)
    await sign_in(page, "tok-observer", "observer")
    assert "olga" in await page.inner_text("#principal")
    await page.wait_for_selector("#readonly-note", timeout=WAIT_MS)
    await page.wait_for_selector(f'#incident-current[data-session="{sid}"]', timeout=WAIT_MS)  # the link's
    await page.wait_for_selector('ol.timeline-list > li[data-type="session.state"]', timeout=WAIT_MS)
    assert await page.is_disabled("#incident-create")
    assert await page.is_disabled("#incident-close")
    assert await page.get_attribute("#incident-create", "title") == "Your role may not do this"
    await screenshot(page, "incidents-observer-en")
    # The gateway refuses anyway: the same command sent from the page's origin with the token.
    reason = await page.evaluate("""async () => {
        const {control_url} = await (await fetch('config.json')).json();
        const ws = new WebSocket(control_url);
        const replies = [];
        await new Promise(r => ws.onopen = r);
        const next = () => new Promise(r => ws.onmessage = m => r(JSON.parse(m.data)));
        ws.send(JSON.stringify({jsonrpc: '2.0', id: 1, method: 'hello', params: {token: 'tok-observer'}}));
        await next();
        ws.send(JSON.stringify({jsonrpc: '2.0', id: 2, method: 'session.create', params: {title: 'x'}}));
        const reply = await next();
        ws.close();
        return reply.error.data.reason;
    }""")
    assert reason == "forbidden"
    assert len((await alice.call("session.list", state="open"))["sessions"]) == 1


async def test_a_cut_link_is_resumed_from_the_last_seq_nothing_lost_nothing_twice(start_gateway, connect,
                                                                                 browser) -> None:
    async with CutProxy("127.0.0.1", 1) as proxy:  # its target: the control port, once bound
        gw = await start_gateway(**SETTINGS, **{"http.console_control_url": f"ws://127.0.0.1:{proxy.port}/v1/control"})
        proxy.target = ("127.0.0.1", gw.control.port)
        alice = await connect(gw)
        page = await browser.open(gw)
        await sign_in(page, "tok-dispatcher", "dispatcher")
        sid = await create_incident(page, "Cut link drill")
        for n in range(2):
            await instruct(alice, sid, f"before the cut {n}")
        rows = page.locator("ol.timeline-list > li")
        await rows.nth(2).wait_for(timeout=WAIT_MS)  # opened + two instructions
        proxy.arm(down=1)  # the next byte to the page cuts its link: the next event's frame
        await instruct(alice, sid, "cuts the link")
        await proxy.cut.wait()
        await page.wait_for_selector('#link[data-link="reconnecting"]', timeout=WAIT_MS)
        tried = proxy.accepted
        for n in range(3):  # stored while the page cannot hear
            await instruct(alice, sid, f"while cut {n}")

        async def refused_once() -> bool:
            return proxy.accepted > tried

        await poll_until(refused_once, 30, "a reconnect attempt refused while the link is cut")
        proxy.heal()
        await page.wait_for_selector('#link[data-link="open"]', timeout=WAIT_MS)
        await instruct(alice, sid, "after the reconnect")
        stored = [e.seq for e in await gw.store.events_after(0, 1000) if e.session_id == sid]
        assert len(stored) == 1 + 2 + 1 + 3 + 1
        await rows.nth(len(stored) - 1).wait_for(timeout=WAIT_MS)
        shown = await timeline_seqs(page)
        assert shown == stored, (shown, stored)  # each once, in order, none twice
        await screenshot(page, "incidents-after-reconnect-en")
        await page.context.close()  # before the proxy goes: no reconnect attempt to a closed port


async def test_health_shows_the_two_indicators_of_the_last_day(start_gateway, connect, browser) -> None:
    gw = await start_gateway(**SETTINGS)
    olga = await connect(gw, "tok-observer")  # reads the indicators as the console will

    async def measured() -> dict | None:
        since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=24)).isoformat()
        k = await olga.call("kpi.get", since=since)
        return k if k["availability"]["whole"]["availability"] is not None else None

    k = await poll_until(measured, 30, "the first probe round measured")
    page = await browser.open(gw, fragment="#/health")
    await sign_in(page, "tok-observer", "observer")  # an observer reads them too
    card = page.locator("#kpi-availability")
    await card.wait_for(timeout=WAIT_MS)
    parts = sorted(k["availability"]["parts"])
    assert "store" in parts and "sip" in parts
    for part in parts:  # nothing went down: every part this gateway runs is up
        await page.wait_for_selector(f'tr[data-part="{part}"][data-up="true"]', timeout=WAIT_MS)
    assert await page.inner_text("#kpi-availability .kpi-value") == "100.00 %"
    assert await page.inner_text("#kpi-timeliness .kpi-value") == "—"  # nothing dispatched yet
    for channel in ("call", "broadcast", "sms", "instruction"):
        assert await page.locator(f'tr[data-channel="{channel}"]').count() == 1
    await screenshot(page, "health-en")
    await choose_language(page, "zh-CN")
    assert await page.inner_text('tr[data-part="store"] td >> nth=0') == "事件存储"
    await screenshot(page, "health-zh-CN")
    await page.context.close()
    page = await browser.open(gw, bypass_csp=True, fragment="#/health")
    await sign_in(page, "tok-observer", "observer")
    await page.locator("#kpi-availability").wait_for(timeout=WAIT_MS)
    violations = await axe_violations(page)
    assert not violations, show(violations)
