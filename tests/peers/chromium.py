"""Headless Chromium (Debian `chromium`) through Playwright, never a downloaded browser.

`launch_chromium(pw)` starts /usr/bin/chromium with the fake camera and microphone (a test
pattern and a beep), media permission granted, and the features that would hide host
candidates behind mDNS names or close a page's WebSocket to 127.0.0.1 disabled (one
`--disable-features` switch: only one takes effect). Pages must come from http://localhost
(`about:blank` has no `navigator.mediaDevices`): `open_page(context, url, html)` serves `html`
at `url` through a route, so nothing listens for it.
A missing /usr/bin/chromium FAILS the test.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",  # a viewer plays the received audio
    "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks,"
    "BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
)
PAGES = Path(__file__).resolve().parent.parent / "video" / "pages"


async def launch_chromium(pw, *, fake_audio: Path | None = None):  # -> playwright Browser
    """`fake_audio`: a WAV the fake microphone plays (looped) in place of its beep."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found (Debian package chromium)", pytrace=False)
    args = list(CHROMIUM_ARGS)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    return await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


async def open_page(context, url: str, html: str):  # -> playwright Page
    """A page at `url` (http://localhost/...) whose document is `html`."""

    async def fulfil(route):
        await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

    await context.route(url, fulfil)
    page = await context.new_page()
    await page.goto(url)
    return page


def page_html(name: str, *scripts: str) -> str:
    """tests/video/pages/<name>, with each of `scripts` (from the same folder) inlined after it."""
    html = (PAGES / name).read_text()
    return html + "".join(f"<script>\n{(PAGES / s).read_text()}\n</script>\n" for s in scripts)


async def poll_until(predicate, timeout: float, what: str):
    """Await `predicate()` every 0.1 s until it is truthy (its value), or fail naming `what`.
    For what a browser only tells when asked (getStats): there is no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def frames_decoded(page) -> int:
    """`framesDecoded` of the page's inbound video (tests/video/pages/peer.html)."""
    return ((await page.evaluate("inboundStats()"))["video"] or {}).get("framesDecoded", 0)
