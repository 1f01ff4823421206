"""Fixtures of the video tests: a network namespace of the test's own, Janus in it, Chromium.

The media tests need a real interface (loopback ICE is refused): `media_netns` moves the test
into a fresh namespace (tests/peers/media_netns.py) before anything else starts, so the Janus
and the browser the test starts live there, and nothing can use the host's interfaces.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.peers.media_netns import MediaNetns, media_namespace


@pytest.fixture
def media_netns():
    with media_namespace() as ns:
        yield ns


@pytest_asyncio.fixture
async def chromium(media_netns: MediaNetns):
    from playwright.async_api import async_playwright

    from tests.peers.chromium import launch_chromium

    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            yield browser
        finally:
            await browser.close()


# The in-process gateway and its clients (tests/gateway/conftest.py): started inside the namespace
# when a test asks for media_netns first.
from tests.gateway.conftest import connect, start_gateway, watch  # noqa: E402,F401
