"""Driving the console (/console/) in headless Chromium against a real gateway: open, sign in,
screenshots into the artefacts folder, axe-core (from console/node_modules) for accessibility."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.console.conftest import CONSOLE

ARTEFACTS = CONSOLE.parent / "artefacts" / "console"  # gitignored; README names it
WAIT_MS = 20_000
VIEWPORT = {"width": 1366, "height": 768}
AXE = CONSOLE / "node_modules" / "axe-core" / "axe.min.js"


class ConsoleBrowser:
    """Chromium with one context per console; collects console errors and uncaught exceptions
    (a CSP violation among them) for the test to assert there were none (the browser's own
    notes of a failed WebSocket attempt excepted)."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.errors: list[str] = []

    def _console(self, message: Any) -> None:
        # A reconnect attempt while the link is down is logged by Chromium itself ("WebSocket
        # connection to ... failed"): expected where a test cuts the link, not the page's fault.
        if message.type == "error" and not message.text.startswith("WebSocket connection to"):
            self.errors.append(message.text)

    async def open(self, gw: Any, *, lang: str = "en", bypass_csp: bool = False, fragment: str = "") -> Any:
        context = await self.browser.new_context(locale="en-US", viewport=VIEWPORT, bypass_csp=bypass_csp)
        page = await context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        await page.goto(f"http://127.0.0.1:{gw.http_port}/console/{fragment}")
        await choose_language(page, lang)
        return page


@asynccontextmanager
async def console_chromium(*, fake_audio: Path | None = None) -> AsyncIterator[ConsoleBrowser]:
    """Debian's Chromium through Playwright (tests/peers/chromium.py; `fake_audio`: the WAV its
    fake microphone plays); on the way out, asserts that no page logged an error."""
    from playwright.async_api import async_playwright

    from tests.peers.chromium import launch_chromium

    async with async_playwright() as pw:
        chromium = await launch_chromium(pw, fake_audio=fake_audio)
        b = ConsoleBrowser(chromium)
        try:
            yield b
        finally:
            await chromium.close()
        assert not b.errors, b.errors


async def choose_language(page: Any, lang: str) -> None:
    await page.select_option("#lang", lang)
    await page.wait_for_function("l => document.documentElement.lang === l", arg=lang, timeout=WAIT_MS)


async def sign_in(page: Any, token: str, role: str) -> None:
    await page.fill("#token", token)
    await page.click("#signin-button")
    await page.wait_for_selector(f'#role[data-role="{role}"]', timeout=WAIT_MS)
    await page.wait_for_selector('#link[data-link="open"]', timeout=WAIT_MS)


async def show_view(page: Any, view: str) -> None:
    await page.click(f'nav a[data-view="{view}"]')
    await page.wait_for_selector(f'nav a[data-view="{view}"][aria-current="page"]', timeout=WAIT_MS)


async def screenshot(page: Any, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


async def axe_violations(page: Any) -> list[dict]:
    """Serious and critical axe-core violations of the page as shown (WCAG 2 A/AA rules)."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text())
    found = await page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'best-practice']}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def show(violations: list[dict]) -> str:
    return json.dumps(violations, indent=1, ensure_ascii=False)
