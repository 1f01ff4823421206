"""The reference field terminal (terminal/, served at /terminal/) in headless Chromium against a
real gateway: sign in with a terminal token, position from the browser's geolocation reported
and seen by a dispatcher (terminal.location, terminal.list), a cut link reconnected by the page
itself (presence online again), the language switch, a bad token refused with a clear message,
and the page's security headers (a CSP without inline script or other origins, obeyed: no
violation reported)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.gateway.test_terminals import TERMINALS, presence, roster
from tests.peers.cutproxy import CutProxy
from tests.peers.ports import free_tcp_port

pytestmark = pytest.mark.peers  # a whole gateway (SIP workers: pjsua2) and Chromium

PAGE_SET = {"directory.endpoint": TERMINALS, "terminals.heartbeat_interval_s": 2,
            "terminals.missed_heartbeats": 3, "terminals.location_interval_s": 0.2}
SHANGHAI = {"latitude": 31.2304, "longitude": 121.4737, "accuracy": 12}
WAIT_MS = 20_000
TERMINAL_DIR = Path(__file__).resolve().parents[2] / "terminal"


class Browser:
    """Chromium with one context per page; collects console errors (CSP violations among them)."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.console: list[str] = []  # console errors (a CSP violation, a failed load)
        self.errors: list[str] = []  # uncaught exceptions in the page's scripts

    async def page(self, gw: Any, geolocation: dict | None = SHANGHAI) -> Any:
        origin = f"http://127.0.0.1:{gw.http_port}"
        context = await self.browser.new_context(
            permissions=["geolocation"] if geolocation else [], geolocation=geolocation, locale="en-US")
        if geolocation:
            await context.grant_permissions(["geolocation"], origin=origin)
        page = await context.new_page()
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        await page.goto(origin + "/terminal/")
        return page


@pytest_asyncio.fixture
async def chromium() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    from tests.peers.chromium import launch_chromium

    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        b = Browser(browser)
        try:
            yield b
        finally:
            await browser.close()
        assert not b.errors, b.errors
        assert not [m for m in b.console if "Content Security Policy" in m or "Failed to load" in m], b.console


async def sign_in(page: Any, token: str = "tok-terminal", remember: bool = False) -> None:
    await page.fill("#token", token)
    if remember:
        await page.check("#remember")
    await page.click("#signin-button")


async def online(page: Any) -> None:
    await page.wait_for_selector('#link-state[data-state="online"]', timeout=WAIT_MS)


async def signed_in_page(context: Any, gw: Any, token: str = "tok-terminal") -> Any:
    """A new page of `context` on the gateway's /terminal/, signed in and online."""
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{gw.http_port}/terminal/")
    await sign_in(page, token)
    await online(page)
    return page


async def browser_page(chromium: Browser, gw: Any) -> Any:
    """A page of its own browser context (its own storage) on /terminal/, signed in, online."""
    page = await chromium.page(gw)
    await sign_in(page)
    await online(page)
    return page


async def test_sign_in_and_position_seen_by_a_dispatcher(start_gateway, connect, watch, chromium) -> None:
    gw = await start_gateway(**PAGE_SET)
    alice = await connect(gw)
    w = await watch(alice)
    page = await browser_page(chromium, gw)
    assert await page.text_content("#principal") == "unit-7"
    await presence(w, "unit-7", "online", "hello")
    loc = await w.wait(lambda e: e["type"] == "terminal.location" and e["data"]["terminal_id"] == "unit-7")
    assert loc["data"]["lat"] == pytest.approx(31.2304) and loc["data"]["lon"] == pytest.approx(121.4737)
    assert loc["data"]["accuracy_m"] == pytest.approx(12)
    entry = await roster(alice, "unit-7")
    assert entry["presence"] == "online" and entry["position"]["lat"] == pytest.approx(31.2304)
    await page.wait_for_selector("#position:has-text('31.23040')", timeout=WAIT_MS)
    # The device moves: the page reports the new fix.
    await page.context.set_geolocation({"latitude": 31.25, "longitude": 121.5, "accuracy": 5})
    await w.wait(lambda e: e["type"] == "terminal.location" and e["data"]["lat"] == pytest.approx(31.25))
    # The responder's status goes with the position, at once when it changes.
    assert loc["data"]["status"] == "available"
    await page.select_option("#status", "on-scene")
    await w.wait(lambda e: e["type"] == "terminal.location" and e["data"].get("status") == "on-scene")
    assert (await roster(alice, "unit-7"))["status"] == "on-scene"
    # The token was not asked to be remembered: it is in no storage of the page.
    stored = await page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert "tok-terminal" not in stored
    track = await alice.call("terminal.track", terminal_id="unit-7")
    assert len(track["points"]) >= 2


@contextlib.asynccontextmanager
async def signed_in_through_proxy(start_gateway, connect, watch, chromium) -> AsyncIterator[tuple]:
    """A gateway whose page reaches the control channel through a CutProxy; the page signed in,
    a dispatcher watching: (proxy, dispatcher, its EventWatch, page, the online presence event)."""
    async with CutProxy("127.0.0.1", 1) as proxy:  # its target: the control port, once bound
        gw = await start_gateway(**PAGE_SET, **{"http.terminal_control_url": f"ws://127.0.0.1:{proxy.port}/v1/control"})
        proxy.target = ("127.0.0.1", gw.control.port)
        alice = await connect(gw)
        w = await watch(alice)
        page = await chromium.page(gw)
        await sign_in(page)
        await online(page)
        yield proxy, alice, w, page, await presence(w, "unit-7", "online", "hello")


async def test_page_reconnects_after_a_cut_link(start_gateway, connect, watch, chromium) -> None:
    async with signed_in_through_proxy(start_gateway, connect, watch, chromium) as (proxy, alice, w, page, first):
        proxy.arm(down=1)  # the next byte to the page (a heartbeat's answer) cuts the link
        off = await presence(w, "unit-7", "offline", "connection-closed", after=first["seq"])
        await page.wait_for_selector('#link-state[data-state="reconnecting"]', timeout=WAIT_MS)
        # The responder moves while the link is down: the page keeps the fixes.
        moves = [(31.24, 121.48), (31.25, 121.49), (31.26, 121.50)]
        for n, (lat, lon) in enumerate(moves, 1):
            await page.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 6})
            await page.wait_for_selector(f'#position[data-backlog="{n}"]', timeout=WAIT_MS)
        proxy.heal()  # the network is back: the page's next attempt gets through
        again = await presence(w, "unit-7", "online", "hello", after=off["seq"])
        await online(page)
        await page.wait_for_selector("#link-detail:has-text('Connected again')", timeout=WAIT_MS)
        # Resumed: the fixes taken offline go into the track, oldest first, the newest live.
        live = await w.wait(lambda e: e["type"] == "terminal.location" and e["seq"] > again["seq"]
                            and e["data"]["lat"] == pytest.approx(31.26))
        assert live["data"]["lon"] == pytest.approx(121.50)
        await page.wait_for_selector('#position[data-backlog="0"]', timeout=WAIT_MS)
        points = (await alice.call("terminal.track", terminal_id="unit-7"))["points"]
        assert [(p["lat"], p["lon"]) for p in points][-3:] == moves
        assert (await roster(alice, "unit-7"))["presence"] == "online"


async def test_bad_token_shows_a_clear_error_and_is_not_retried(start_gateway, connect, chromium) -> None:
    gw = await start_gateway(**PAGE_SET)
    page = await chromium.page(gw)
    await sign_in(page, "not-a-token", remember=True)
    error = page.locator("#signin-error")
    await error.wait_for(state="visible", timeout=WAIT_MS)
    assert await error.text_content() == "This token was not accepted. Check it and try again."
    assert await page.is_hidden("#work")
    assert await page.get_attribute("#link-state", "data-state") == "rejected"
    assert await page.evaluate("() => localStorage.getItem('dgw.token')") is None  # a bad one is not kept
    # A dispatcher's token is no terminal's: refused too, with its own message.
    await sign_in(page, "tok-dispatcher")
    await page.wait_for_function(
        "() => document.querySelector('#signin-error').textContent.includes('does not belong')", timeout=WAIT_MS)


async def test_language_switch_and_every_string_translated(start_gateway, chromium) -> None:
    gw = await start_gateway(**PAGE_SET)
    page = await chromium.page(gw)
    assert await page.text_content("h1") == "Field terminal"
    await page.click("#lang")
    assert await page.text_content("h1") == "现场终端"
    assert await page.text_content("#signin-button") == "登录"
    assert await page.evaluate("() => document.documentElement.lang") == "zh-CN"
    # Both tables hold the same keys, every key the page names exists, no Chinese string left English.
    tables = await page.evaluate("async () => (await import('./i18n.js')).STRINGS")
    en, zh = tables["en"], tables["zh-CN"]
    assert set(en) == set(zh)
    used = await page.evaluate("() => [...document.querySelectorAll('[data-i18n]')].map(e => e.dataset.i18n)")
    source = (TERMINAL_DIR / "app.js").read_text()  # the one module that shows text
    used += re.findall(r'(?<!call\()(?<!=== )"((?:app|lang|link|signin|work|error|position|status|instructions|feedback|video|voice)\.[\w-]+)"', source)
    used += [f"link.{s}" for s in ("offline", "connecting", "online", "reconnecting", "rejected")]
    used += [f"error.{r}" for r in ("not-authenticated", "forbidden")]
    used += [f"position.{c}" for c in ("denied", "unavailable", "unsupported")]
    used += [f"{m}.{s}" for m in ("video", "voice") for s in ("starting", "live", "stopped", "failed")]
    assert not [k for k in used if k not in en], "keys used but not translated"
    assert [k for k in en if en[k] == zh[k]] == []
    # Remembered for the next visit; the sign-in error comes in Chinese too.
    await page.reload()
    assert await page.text_content("h1") == "现场终端"
    await sign_in(page, "not-a-token")
    await page.wait_for_function(
        "() => document.querySelector('#signin-error').textContent === '令牌无效，请检查后重试。'", timeout=WAIT_MS)


async def test_page_headers_config_and_no_listing(start_gateway) -> None:
    gw = await start_gateway(**PAGE_SET)
    base = f"http://127.0.0.1:{gw.http_port}"

    def get(path: str, host: str | None = None) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(base + path, headers={"Host": host} if host else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    status, headers, body = await asyncio.to_thread(get, "/terminal/")
    assert status == 200 and b"<script type=\"module\" src=\"app.js\">" in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert f"connect-src 'self' ws://127.0.0.1:{gw.control.port};" in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert not re.search(rb"<script(?![^>]*\bsrc=)", body), "inline script"
    assert not re.search(rb"https?://", body), "an external reference"
    status, headers, body = await asyncio.to_thread(get, "/terminal/config.json", "localhost:1234")
    config = json.loads(body)
    assert status == 200 and config["control_url"] == f"ws://localhost:{gw.control.port}/v1/control"
    assert config["heartbeat_interval_s"] == 2 and config["protocol"] == 1
    for path in ("/terminal/../gateway/app.py", "/terminal/nope.js", "/terminal/%2e%2e/pyproject.toml"):
        status, _, _ = await asyncio.to_thread(get, path)
        assert status == 404, path


def instruction_step(w: Any, iid: str, step: str):
    return w.wait(lambda e: e["type"] == "terminal.instruction" and e["data"]["instruction_id"] == iid
                  and e["data"]["step"] == step)


async def test_instructions_shown_once_in_order_and_acknowledged(start_gateway, connect, watch, chromium) -> None:
    gw = await start_gateway(**PAGE_SET, **{"terminals.redeliver_s": 0.5})
    alice = await connect(gw)
    w = await watch(alice)
    page = await chromium.page(gw)
    # The page's first answers `terminal.received` are lost on the way (the socket is routed):
    # the gateway pushes the same instruction again, and the page must show it once.
    dropped: list[str] = []

    async def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def up(message: str | bytes) -> None:
            if isinstance(message, str) and '"terminal.received"' in message and len(dropped) < 2:
                dropped.append(message)
                return
            server.send(message)

        ws.on_message(up)

    await page.route_web_socket(re.compile(r"/v1/control$"), route)
    await sign_in(page)
    await online(page)
    first = await alice.call("terminal.instruct", targets=["unit-7"], text="Go to gate 3", fallback="none")
    await instruction_step(w, first["instruction_id"], "delivered")
    assert len(dropped) == 2  # pushed three times at least
    second = await alice.call("terminal.instruct", targets=["group:d3"], text="Then report smoke", fallback="none")
    items = page.locator("#instructions li")
    await items.nth(1).wait_for(timeout=WAIT_MS)
    assert await items.locator(".text").all_text_contents() == ["Go to gate 3", "Then report smoke"]
    # Acknowledged from the page: the dispatcher sees it; the button becomes "Acknowledged".
    await items.nth(0).locator("button.ack").click()
    acked = await instruction_step(w, first["instruction_id"], "acknowledged")
    assert acked["data"]["terminal_id"] == "unit-7"
    await items.nth(0).locator(".acked").wait_for(timeout=WAIT_MS)
    state = await alice.call("terminal.instruction.get", instruction_id=second["instruction_id"])
    assert [t["state"] for t in state["terminals"] if t["terminal_id"] == "unit-7"] == ["delivered"]
    # After a reload and a new sign-in: each still once, the acknowledgement kept.
    await page.reload()
    await sign_in(page)
    await online(page)
    await items.nth(1).wait_for(timeout=WAIT_MS)
    assert await items.locator(".text").all_text_contents() == ["Go to gate 3", "Then report smoke"]
    assert await items.nth(0).get_attribute("data-ack") == "done"


async def test_a_reinstalled_page_gets_back_the_instructions_not_acknowledged(
        start_gateway, connect, watch, chromium) -> None:
    gw = await start_gateway(**PAGE_SET)
    alice = await connect(gw)
    w = await watch(alice)
    page = await browser_page(chromium, gw)
    ids = [(await alice.call("terminal.instruct", targets=["unit-7"], text=text, fallback="none"))["instruction_id"]
           for text in ("Go to gate 3", "Then report smoke", "Close the valve")]
    for iid in ids:
        await instruction_step(w, iid, "delivered")  # delivered: never pushed again
    items = page.locator("#instructions li")
    await items.nth(0).locator("button.ack").click()
    await instruction_step(w, ids[0], "acknowledged")
    # Another browser (storage empty: the app reinstalled) signs in as the same terminal.
    fresh = await browser_page(chromium, gw)
    shown = fresh.locator("#instructions li")
    await shown.nth(1).wait_for(timeout=WAIT_MS)
    assert await shown.locator(".text").all_text_contents() == ["Then report smoke", "Close the valve"]
    await shown.nth(0).locator("button.ack").click()  # and it can acknowledge them
    await instruction_step(w, ids[1], "acknowledged")


async def test_instructions_given_while_offline_arrive_once_in_order(start_gateway, connect, watch, chromium) -> None:
    async with signed_in_through_proxy(start_gateway, connect, watch, chromium) as (proxy, alice, w, page, first):
        proxy.arm(down=1)
        await presence(w, "unit-7", "offline", "connection-closed", after=first["seq"])
        texts = [f"Step {i}: hold the line" for i in range(1, 4)]
        ids = [(await alice.call("terminal.instruct", targets=["unit-7"], text=t, fallback="none"))["instruction_id"]
               for t in texts]
        # Offline, the acknowledgement of nothing yet; the link comes back.
        proxy.heal()
        for iid in ids:
            await instruction_step(w, iid, "delivered")
        items = page.locator("#instructions li")
        await items.nth(2).wait_for(timeout=WAIT_MS)
        assert await items.locator(".text").all_text_contents() == texts
        # An acknowledgement pressed while the link is down goes out when it is back.
        proxy.arm(down=1)
        await page.wait_for_selector('#link-state:not([data-state="online"])', timeout=WAIT_MS)
        await items.nth(1).locator("button.ack").click()
        assert await items.nth(1).locator("button.ack").is_disabled()
        proxy.heal()
        await instruction_step(w, ids[1], "acknowledged")
        assert await items.count() == 3


async def test_text_and_photo_sent_into_the_incident(start_gateway, connect, watch, chromium, tmp_path) -> None:
    gw = await start_gateway(**PAGE_SET)
    alice = await connect(gw)
    w = await watch(alice)
    photo = tmp_path / "scene.jpg"
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", str(photo))
    assert await proc.wait() == 0
    page = await chromium.page(gw)
    await sign_in(page)
    await online(page)
    # Text alone.
    await page.fill("#feedback-text", "Two cars, nobody hurt")
    await page.click("#feedback-send")
    ev = await w.wait(lambda e: e["type"] == "terminal.feedback")
    assert ev["data"]["text"] == "Two cars, nobody hurt" and ev["data"]["terminal_id"] == "unit-7"
    await page.wait_for_selector('#feedback-state[data-state="sent"]', timeout=WAIT_MS)
    # A photo with a caption: uploaded, then named by its SHA-256 in the feedback.
    await page.fill("#feedback-text", "The scene")
    await page.set_input_files("#feedback-photo", str(photo))
    assert await page.text_content("#feedback-photo-name") == "scene.jpg"
    await page.click("#feedback-send")
    ev = await w.wait(lambda e: e["type"] == "terminal.feedback" and e["data"].get("uploads"))
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert ev["data"]["text"] == "The scene"
    assert [(u["sha256"], u["type"]) for u in ev["data"]["uploads"]] == [(sha, "image/jpeg")]
    await page.wait_for_selector('#feedback-state[data-state="sent"]', timeout=WAIT_MS)
    assert await page.text_content("#feedback-photo-name") == "No photo"  # the form is cleared

    def download(sha: str) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{gw.http_port}/v1/uploads/{sha}",
                                     headers={"Authorization": "Bearer tok-dispatcher"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    assert await asyncio.to_thread(download, sha) == photo.read_bytes()  # small: sent as it is
    # A phone-sized photo (4000x3000) is scaled to 2048 px on its longest side before it goes.
    big = tmp_path / "big.jpg"
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=4000x3000", "-frames:v", "1", "-q:v", "1",
        str(big))
    assert await proc.wait() == 0
    await page.set_input_files("#feedback-photo", str(big))
    await page.click("#feedback-send")
    ev = await w.wait(lambda e: e["type"] == "terminal.feedback" and e["data"].get("uploads")
                      and e["data"]["uploads"][0]["sha256"] != sha)
    sent = ev["data"]["uploads"][0]
    assert sent["type"] == "image/jpeg" and sent["size"] < big.stat().st_size
    stored = await asyncio.to_thread(download, sent["sha256"])
    probe = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await probe.communicate(stored)
    assert out.decode().strip() == "2048,1536"
    await page.wait_for_selector('#feedback-state[data-state="sent"]', timeout=WAIT_MS)
    # A voice note from the (fake) microphone: recorded in the page, uploaded as Opus in WebM.
    await page.click("#feedback-record")
    await page.wait_for_selector('#feedback-record:has-text("Stop recording")', timeout=WAIT_MS)
    await page.click("#feedback-record")
    await page.wait_for_selector("#feedback-note-name:has-text('Voice note,')", timeout=WAIT_MS)
    await page.click("#feedback-send")
    ev = await w.wait(lambda e: e["type"] == "terminal.feedback" and e["data"].get("uploads")
                      and e["data"]["uploads"][0]["type"].startswith("audio/"))
    assert ev["data"]["uploads"][0]["type"] == "audio/webm" and "text" not in ev["data"]
    await page.wait_for_selector("#feedback-note-name:has-text('No voice note')", timeout=WAIT_MS)
    # Nothing to send: said so, nothing sent.
    await page.click("#feedback-send")
    await page.wait_for_selector("#feedback-state:has-text('Write a message, choose a photo or record a voice note first.')")
    assert len([e for e in w.events if e["type"] == "terminal.feedback"]) == 4


async def test_page_comes_back_after_a_gateway_restart_with_what_was_queued(
        start_gateway, connect, watch, chromium) -> None:
    ports = {"control.port": free_tcp_port(), "http.port": free_tcp_port()}  # the same after the restart
    gw = await start_gateway(**PAGE_SET, **ports)
    alice = await connect(gw)
    page = await chromium.page(gw)
    await sign_in(page, remember=True)
    await online(page)
    before = await alice.call("terminal.instruct", targets=["unit-7"], text="Before the restart", fallback="none")
    items = page.locator("#instructions li")
    await items.nth(0).wait_for(timeout=WAIT_MS)
    await alice.close()
    await gw.stop()
    await page.wait_for_selector('#link-state:not([data-state="online"])', timeout=WAIT_MS)
    gw2 = await start_gateway(**PAGE_SET, **ports)  # same data dir: the store carries on
    alice = await connect(gw2)
    w = await watch(alice, since=0)
    after = [(await alice.call("terminal.instruct", targets=["unit-7"], text=t, fallback="none"))["instruction_id"]
             for t in ("After it: 1", "After it: 2")]
    for iid in after:
        await instruction_step(w, iid, "delivered")
    await items.nth(2).wait_for(timeout=WAIT_MS)
    assert await items.locator(".text").all_text_contents() == ["Before the restart", "After it: 1", "After it: 2"]
    await online(page)
    assert before["instruction_id"] not in after
    # The token was remembered (asked for): a reload signs in by itself; signing out forgets it.
    await page.reload()
    await online(page)
    assert await page.text_content("#principal") == "unit-7"
    await page.click("#signout")
    assert await page.is_visible("#signin")
    assert await page.evaluate("() => localStorage.getItem('dgw.token')") is None


async def test_a_report_written_offline_goes_out_once_when_the_link_is_back(
        start_gateway, connect, watch, chromium) -> None:
    async with signed_in_through_proxy(start_gateway, connect, watch, chromium) as (proxy, alice, w, page, first):
        proxy.arm(down=1)
        await presence(w, "unit-7", "offline", "connection-closed", after=first["seq"])
        await page.fill("#feedback-text", "Road blocked at km 12")
        await page.click("#feedback-send")
        await page.wait_for_selector('#feedback-state[data-state="waiting"]', timeout=WAIT_MS)
        assert await page.is_disabled("#feedback-send")  # one report at a time
        proxy.heal()
        await page.wait_for_selector('#feedback-state[data-state="sent"]', timeout=WAIT_MS)
        ev = await w.wait(lambda e: e["type"] == "terminal.feedback")
        assert ev["data"]["text"] == "Road blocked at km 12"
        await page.fill("#feedback-text", "Cleared")
        await page.click("#feedback-send")
        await w.wait(lambda e: e["type"] == "terminal.feedback" and e["data"]["text"] == "Cleared")
        assert [e["data"]["text"] for e in w.events if e["type"] == "terminal.feedback"] == [
            "Road blocked at km 12", "Cleared"]


async def test_location_permission_denied_is_said(start_gateway, chromium) -> None:
    gw = await start_gateway(**PAGE_SET)
    page = await chromium.page(gw, geolocation=None)  # no permission granted
    await sign_in(page)
    await online(page)
    await page.wait_for_selector("#position-error:has-text('Location permission denied')", timeout=WAIT_MS)
    await page.click("#lang")
    assert await page.text_content("#position-error") == "定位权限被拒绝：请在浏览器设置中允许。"


async def test_a_spent_hello_budget_is_said_and_waited_out(start_gateway, chromium) -> None:
    gw = await start_gateway(**PAGE_SET, **{"control.hello_failures_burst": 1, "control.hello_failure_refill_s": 3})
    page = await chromium.page(gw)
    await sign_in(page, "not-a-token")  # spends this address's budget
    await page.wait_for_selector("#signin-error:has-text('not accepted')", timeout=WAIT_MS)
    await sign_in(page)  # the right token, but the gateway does not try it yet
    await page.wait_for_selector("#signin-error:has-text('Too many attempts. Wait')", timeout=WAIT_MS)
    await online(page)  # after retry_after_s the page tries again by itself
    assert await page.text_content("#principal") == "unit-7"
    assert await page.is_hidden("#signin-error")
