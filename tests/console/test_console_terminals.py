"""The Terminals view in headless Chromium against a real gateway with Janus (in the test's own
network namespace), the real /terminal page as the responder (fake camera, geolocation set by
the test) and the Twilio stub for the fallback SMS: the page's position is a marker on the map
and moves with it; an instruction sent from the view is acknowledged on the page and shown
acknowledged; one to a terminal that is offline is shown sent by SMS instead, then the SMS
delivered; the page's camera pulled into the wall plays (frames decoded, a width); the wall mode
fills the screen. Screenshots in English and Chinese; axe-core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.console.browser import (VIEWPORT, WAIT_MS, ConsoleBrowser, axe_violations, choose_language, console_chromium, screenshot,
                                   show, show_view, sign_in)
from tests.gateway.test_sms_twilio import twilio_gateway
from tests.peers.cutproxy import CutProxy
from tests.gateway.test_terminal_page import SHANGHAI, online
from tests.gateway.test_terminal_page import sign_in as terminal_sign_in
from tests.video.conftest import media_netns  # noqa: F401 (Janus and Chromium in the test's own namespace)
from tests.video.test_video_gateway import video_settings

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]


@pytest_asyncio.fixture
async def browser(media_netns, console_dist) -> AsyncIterator[ConsoleBrowser]:
    async with console_chromium() as b:  # started inside the namespace: Janus is reachable
        yield b


async def terminal_page(browser: ConsoleBrowser, gw: Any) -> Any:
    """The /terminal page signed in as unit-7 with a fake camera and a position."""
    origin = f"http://127.0.0.1:{gw.http_port}"
    context = await browser.browser.new_context(locale="en-US", geolocation=SHANGHAI, permissions=["geolocation"])
    await context.grant_permissions(["geolocation"], origin=origin)
    page = await context.new_page()
    await page.goto(origin + "/terminal/")
    await terminal_sign_in(page, "tok-terminal")
    await online(page)
    return page


def marker(terminal: str) -> str:
    return ("t => (window.dispatchMap?.markers() ?? []).find(m => m.terminal_id === t && m.visible"
            " && m.presence === 'online')")


async def marker_at(page: Any, terminal: str) -> dict:
    handle = await page.wait_for_function(marker(terminal), arg=terminal, timeout=WAIT_MS)
    return await handle.json_value()


async def frames(page: Any, terminal: str) -> dict:
    return await page.evaluate(
        "t => { const v = document.querySelector(`.wall-tile[data-terminal='${t}'] video`);"
        " return v ? {frames: v.getVideoPlaybackQuality().totalVideoFrames, width: v.videoWidth} : null; }", terminal)


async def playing(page: Any, terminal: str, more_than: int = 10) -> None:
    await page.wait_for_function(
        "([t, n]) => { const v = document.querySelector(`.wall-tile[data-terminal='${t}'] video`);"
        " return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > n; }",
        arg=[terminal, more_than], timeout=30_000)


async def terminals_axe_violations(browser: ConsoleBrowser, gw: Any) -> list[dict]:
    """axe-core on the Terminals view and its wall mode as a second console shows them (it pulls
    the same live stream: a second viewer), in a context of its own: axe's script needs the CSP
    bypassed, the page under test keeps it."""
    page = await browser.open(gw, bypass_csp=True)
    try:
        await sign_in(page, "tok-dispatcher", "dispatcher")
        await show_view(page, "terminals")
        await page.click('tr[data-terminal="unit-7"][data-presence="online"] .terminal-pull')
        await playing(page, "unit-7")
        found = await axe_violations(page)
        await page.click("#wall-mode")
        await page.wait_for_selector("#video-wall.wall-mode", timeout=WAIT_MS)
        return found + await axe_violations(page)
    finally:
        await page.context.close()


async def test_map_instructions_with_sms_fallback_and_the_video_wall(media_netns, start_gateway, browser, tmp_path) -> None:
    proxy = await CutProxy("127.0.0.1", 1).start()  # the console's link; its target once bound
    sets = {**video_settings(media_netns), "terminals.location_interval_s": 0.2, "terminals.heartbeat_interval_s": 2,
            "http.console_control_url": f"ws://127.0.0.1:{proxy.port}/v1/control"}
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False, **sets) as (gw, stub, _, _):
        proxy.target = ("127.0.0.1", gw.control.port)
        responder = await terminal_page(browser, gw)
        page = await browser.open(gw)
        await sign_in(page, "tok-dispatcher", "dispatcher")
        await show_view(page, "incidents")  # everything below goes into this incident
        await page.fill("#incident-title", "Flood at pier 4")
        await page.click("#incident-create")
        await page.wait_for_selector("#incident-current[data-session]", timeout=WAIT_MS)
        await show_view(page, "terminals")

        # The page's position: a marker on the map; it moves when the responder does.
        await responder.wait_for_selector("#position[data-backlog]", state="attached", timeout=WAIT_MS)
        first = await marker_at(page, "unit-7")
        row = page.locator('tr[data-terminal="unit-7"][data-presence="online"]')
        await row.wait_for(timeout=WAIT_MS)
        await responder.context.set_geolocation({"latitude": 31.26, "longitude": 121.52, "accuracy": 5})
        moved = await (await page.wait_for_function(
            "t => (window.dispatchMap?.markers() ?? []).find(m => m.terminal_id === t && Math.abs(m.lat - 31.26) < 1e-6)",
            arg="unit-7", timeout=WAIT_MS)).json_value()
        assert first["lat"] == pytest.approx(31.2304) and moved["trail"] >= 2 and moved["visible"]
        # Zoom with the keyboard: the map's scale doubles.
        scale = (await page.evaluate("() => window.dispatchMap.viewport()"))["scale"]
        await page.focus("#terminal-map")
        await page.keyboard.press("+")
        await page.wait_for_function("s => window.dispatchMap.viewport().scale === 2 * s", arg=scale, timeout=WAIT_MS)
        assert await page.get_attribute("#terminal-map", "data-markers") == "1"

        # An instruction to unit-7, acknowledged on the page; one to unit-8 (offline): by SMS.
        await row.locator(".terminal-pick").check()
        await page.fill("#instruct-text", "Go to gate 3")
        await page.click("#instruct-send")
        item = responder.locator("#instructions li")
        await item.first.wait_for(timeout=WAIT_MS)
        await page.wait_for_selector('.delivery[data-terminal="unit-7"][data-state="delivered"]', timeout=WAIT_MS)
        await item.first.locator("button.ack").click()
        await page.wait_for_selector('.delivery[data-terminal="unit-7"][data-state="acknowledged"]', timeout=WAIT_MS)
        # Now working on the incident: its next position is in the incident too.
        await responder.context.set_geolocation({"latitude": 31.27, "longitude": 121.53, "accuracy": 5})
        await page.wait_for_function(
            "t => (window.dispatchMap?.markers() ?? []).some(m => m.terminal_id === t && Math.abs(m.lat - 31.27) < 1e-6)",
            arg="unit-7", timeout=WAIT_MS)
        await row.locator(".terminal-pick").uncheck()
        await page.locator('tr[data-terminal="unit-8"] .terminal-pick').check()
        await page.fill("#instruct-text", "Call the desk")
        await page.click("#instruct-send")
        await page.wait_for_selector('.delivery[data-terminal="unit-8"][data-state="fallback-sms"][data-sms="delivered"]',
                                     timeout=WAIT_MS)
        assert [m["to"] for m in stub.messages.values()] == ["+8613800138008"]

        # The responder's camera into the wall: frames decoded, a picture width.
        await row.locator(".terminal-pull").click()
        tile = '.wall-tile[data-terminal="unit-7"]'
        await page.wait_for_selector(f"{tile} figcaption:has-text('Unit 7')", timeout=WAIT_MS)
        await playing(page, "unit-7")
        before = await frames(page, "unit-7")
        await playing(page, "unit-7", before["frames"] + 10)  # still decoding
        assert before["width"] > 0
        # The console's link cut (the next event to it) and back: its tile plays again (the
        # gateway ended the old connection's watch: the stream is watched again on the new one).
        watch_before = await page.get_attribute(tile, "data-watch")
        assert watch_before
        proxy.arm(down=1)
        await responder.context.set_geolocation({"latitude": 31.28, "longitude": 121.54, "accuracy": 5})
        await proxy.cut.wait()
        await page.wait_for_selector('#link[data-link="reconnecting"]', timeout=WAIT_MS)
        proxy.heal()
        await page.wait_for_selector('#link[data-link="open"]', timeout=WAIT_MS)
        await page.wait_for_selector(f'{tile}:not([data-watch=""]):not([data-watch="{watch_before}"])', timeout=WAIT_MS)
        again = await frames(page, "unit-7")
        await playing(page, "unit-7", again["frames"] + 30)

        await screenshot(page, "terminals-en")
        violations = await terminals_axe_violations(browser, gw)
        assert not violations, show(violations)
        await choose_language(page, "zh-CN")
        await page.wait_for_selector('#terminals-title:has-text("终端")', timeout=WAIT_MS)
        await screenshot(page, "terminals-zh-CN")
        await page.click("#wall-mode")
        await page.wait_for_selector("#video-wall.wall-mode", timeout=WAIT_MS)
        box = await page.locator(f"{tile} .wall-name").bounding_box()  # each tile's name on screen
        assert box and box["y"] + box["height"] <= VIEWPORT["height"], box
        await screenshot(page, "terminals-wall-zh-CN")
        await choose_language(page, "en")
        await screenshot(page, "terminals-wall-en")
        await page.keyboard.press("Escape")
        await page.wait_for_selector("#video-wall:not(.wall-mode)", timeout=WAIT_MS)

        # Closing the tile unwatches it.
        await page.click(f"{tile} .wall-close")
        await page.wait_for_selector(tile, state="detached", timeout=WAIT_MS)

        # The responder into a call: a new conference, the page's microphone joins it.
        await row.locator(".terminal-bring").click()
        await responder.wait_for_selector('#voice-state[data-state="live"]', timeout=30_000)
        await show_view(page, "voice")
        await page.wait_for_selector('tr[data-target="terminal:unit-7"][data-state="joined"]', timeout=WAIT_MS)

        # The incident's timeline: the instruction's steps, the SMS instead, the positions, the video.
        await show_view(page, "incidents")
        timeline = page.locator('[data-testid="timeline"]')
        await timeline.locator('li[data-type="terminal.instruction"]:has-text("Unit 7: acknowledged")').wait_for(
            timeout=WAIT_MS)
        await timeline.locator('li[data-type="terminal.instruction"]:has-text("sent by SMS instead")').wait_for(
            timeout=WAIT_MS)
        await timeline.locator('li[data-type="video.state"]:has-text("Video from Unit 7: publishing")').first.wait_for(
            timeout=WAIT_MS)
        await timeline.locator('li[data-type="terminal.location"]:has-text("Unit 7 at 31.27000, 121.53000")').first.wait_for(
            timeout=WAIT_MS)
        await responder.context.close()
        await page.context.close()  # before the proxy goes: no reconnect attempt to a closed port
    await proxy.stop()
