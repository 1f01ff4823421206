"""The Voice view in headless Chromium (fake microphone playing a tone made with sox) against a
real gateway and baresip phones: a dispatcher dials a phone and the phone records the console's
tone while the phone's tone is heard in the page (an AnalyserNode on the speaker path), gets
digits, is held and transferred to another phone; an inbound call rings in the console with its
caller and is answered, muted and hung up with the keyboard, another is rejected;
a conference built from the view (a phone dialled in, a 1:1 call of the console moved in with
the console itself), a member muted and one kicked, checked in what the phones recorded.
An observer sees the calls and conferences with every command disabled. Screenshots in English and
Chinese; axe-core."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from tests.audio import active_span, dominant_frequency, read_wav
from tests.console.browser import (WAIT_MS, ConsoleBrowser, axe_violations, choose_language, console_chromium, screenshot,
                                   show, show_view, sign_in)
from tests.peers.baresip import BaresipPhone
from tests.peers.chromium import poll_until
from tests.peers.process import require_binary

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

CONSOLE_HZ = 1000  # the console's fake microphone
WAIT_S = WAIT_MS / 1000


def sox_tone(path: Path, hz: int, seconds: int = 60) -> Path:
    """A WAV of a sine (48 kHz mono PCM16) for Chromium's fake microphone, made by sox."""
    sox = require_binary("sox")
    subprocess.run([sox, "-n", "-r", "48000", "-c", "1", "-b", "16", str(path), "synth", str(seconds), "sine", str(hz),
                    "vol", "0.5"], check=True, capture_output=True, timeout=60)
    return path


@pytest_asyncio.fixture
async def browser(console_dist, tmp_path) -> AsyncIterator[ConsoleBrowser]:
    async with console_chromium(fake_audio=sox_tone(tmp_path / "console-tone.wav", CONSOLE_HZ)) as b:
        yield b


def directory(**phones: BaresipPhone) -> dict[str, str]:
    rows = ", ".join(f'{{name = "{n}", uri = "{p.uri}", kind = "phone", display_name = "{n.title()}"}}'
                     for n, p in phones.items())
    return {"directory.endpoint": f"[{rows}]"}


async def voice_console(start_gateway: Any, connect: Any, watch: Any, browser: ConsoleBrowser,
                        **phones: BaresipPhone) -> tuple[Any, Any, Any]:
    """A gateway whose directory names `phones`, a watch of its events, a dispatcher's console on Voice."""
    gw = await start_gateway(**directory(**phones))
    w = await watch(await connect(gw))
    page = await browser.open(gw)
    await sign_in(page, "tok-dispatcher", "dispatcher")
    await show_view(page, "voice")
    return gw, w, page


async def dial_with_enter(page: Any) -> None:
    """Enter in the target field, once the form took the typed target (Dial enabled: the
    browser's implicit submission skips a disabled submit button)."""
    await page.wait_for_selector("#voice-dial:not([disabled])", timeout=WAIT_MS)
    await page.press("#voice-target", "Enter")


async def speaker_hears(page: Any, hz: float, tolerance: float = 15) -> float:
    """Waits until the page's speaker path (its AnalyserNode) plays `hz`; returns what it heard."""

    async def peak() -> float | None:
        p = await page.evaluate("() => window.dispatchAudio.speakerPeak()")
        return p["hz"] if p and abs(p["hz"] - hz) < tolerance else None

    return await poll_until(peak, WAIT_S, f"the page's speaker to play {hz} Hz")


async def mic_is_live(page: Any, meter: str) -> None:
    await page.wait_for_function(f"() => Number(document.querySelector('{meter}')?.dataset.level) > 0.3",
                                 timeout=WAIT_MS)


def tone_power(samples: np.ndarray, rate: int, hz: float) -> float:
    """Spectral power within 10 Hz of `hz` (Hann window), relative to the whole spectrum."""
    spec = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spec[np.abs(freqs - hz) < 10].sum() / max(spec.sum(), 1e-12))


async def test_dial_a_phone_both_ways_and_answer_inbound_with_the_keyboard(start_gateway, connect, watch, browser) -> None:
    async with BaresipPhone(user="duty", tone_hz=600, console=True) as phone, BaresipPhone(user="chief") as chief:
        gw, w, page = await voice_console(start_gateway, connect, watch, browser, duty=phone, chief=chief)

        # Outbound: picked from the directory by name, dialled with Enter.
        await page.fill("#voice-target", "duty")
        await dial_with_enter(page)
        connected = await w.call_state(None, "connected", timeout=WAIT_S)
        cid = connected["call_id"]
        row = f'tr[data-call="{cid}"]'
        await page.wait_for_selector(f'{row}[data-state="connected"] .voice-audio-stop', timeout=WAIT_MS)
        # The phone's 600 Hz plays in the page; the console's microphone is live into the call.
        heard = await speaker_hears(page, 600)
        await mic_is_live(page, f"#mic-{cid}")
        await asyncio.sleep(2.5)  # 2.5 s of the console's tone for the phone to record
        # The keypad of the selected call (RFC 4733 digits at the phone), hold and resume.
        await page.check(f'{row} input[name="voice-selected"]')
        for key in ("1", "#"):
            await page.click(f'.voice-selected .dtmf-key:text-is("{key}")')
            await phone.wait_log(f"received event: '{key}' (end=1)", timeout=WAIT_S)
        await page.click(f"{row} .voice-hold")
        await w.call_state(cid, "held", timeout=WAIT_S)
        await page.click(f'{row}[data-state="held"] .voice-unhold')
        await w.wait(lambda e: e["type"] == "call.state" and w.states(cid)[-1:] == ["connected"] and "held" in w.states(cid),
                     timeout=WAIT_S)
        # Transfer to the chief, named from the directory: the phone is referred and calls the chief.
        await page.fill("#voice-transfer-target", "chief")
        await page.click("#voice-transfer")
        ended = await w.call_state(cid, "ended", timeout=WAIT_S)
        await chief.wait_log("Call established: sip:duty@", timeout=WAIT_S)
        samples, rate = read_wav(phone.recordings("dec")[0])  # its call with the console
        assert ended["cause"] == "transferred"
        tone = active_span(samples, rate)
        assert len(tone) / rate > 1.5, f"the phone heard only {len(tone) / rate:.2f}s of the console"
        assert abs(dominant_frequency(tone, rate) - CONSOLE_HZ) < 20
        assert abs(heard - 600) < 15
        await page.wait_for_selector(f'{row}[data-state="ended"]', timeout=WAIT_MS)
        assert await page.evaluate("() => window.dispatchAudio.speakers()") == 0  # the call's audio stopped

        # Inbound: the phone calls the gateway; the console rings with the caller, from any view.
        await show_view(page, "directory")
        cfg = gw.config.sip
        phone.command(f"/dial sip:desk@{cfg.host}:{cfg.port}")
        ringing = (await w.wait(lambda e: e["type"] == "call.state" and e["data"]["direction"] == "inbound",
                                timeout=WAIT_S))["data"]
        assert ringing["state"] == "ringing"
        banner = page.locator(f'#incoming-calls .incoming-call[data-call="{ringing["call_id"]}"]')
        await banner.wait_for(timeout=WAIT_MS)
        assert "duty@" in await banner.inner_text()
        await page.keyboard.press("Alt+A")  # answer
        await w.call_state(ringing["call_id"], "connected", timeout=WAIT_S)
        await banner.wait_for(state="detached", timeout=WAIT_MS)
        await show_view(page, "voice")
        await page.wait_for_selector(f'tr[data-call="{ringing["call_id"]}"] .voice-audio-stop', timeout=WAIT_MS)
        await speaker_hears(page, 600)  # answered into the console's own speaker
        mic = f'#mic-{ringing["call_id"]}'
        await mic_is_live(page, mic)
        await page.keyboard.press("Alt+M")  # mute: the badge, the meter falls silent
        await page.wait_for_selector("#incoming-calls .mic-muted", timeout=WAIT_MS)
        await page.wait_for_selector(f'{mic}[data-level="0"]', timeout=WAIT_MS)
        await page.keyboard.press("Alt+M")
        await page.wait_for_selector("#incoming-calls", state="detached", timeout=WAIT_MS)
        await mic_is_live(page, mic)
        await page.keyboard.press("Alt+H")  # hang up
        ended = await w.call_state(ringing["call_id"], "ended", timeout=WAIT_S)

        # Another inbound call, rejected from the banner: the phone is told busy.
        phone.command(f"/dial sip:desk@{cfg.host}:{cfg.port}")
        again = (await w.wait(lambda e: e["type"] == "call.state" and e["data"]["direction"] == "inbound"
                              and e["data"]["call_id"] != ringing["call_id"], timeout=WAIT_S))["data"]
        await page.click(f'#incoming-calls .incoming-call[data-call="{again["call_id"]}"] .incoming-reject')
        rejected = await w.call_state(again["call_id"], "ended", timeout=WAIT_S)
        await phone.wait_log("486", timeout=WAIT_S)
    assert ended["cause"] == "local-hangup" and ended["direction"] == "inbound"
    assert rejected["cause"] == "rejected"
    audit = [a["method"] for a in await gw.store.list_audit(principal="alice")]  # the console's commands
    assert {"call.dial", "media.open", "call.dtmf", "call.hold", "call.transfer", "call.hangup", "call.answer",
            "call.reject"} <= set(audit)


def member_event(w: Any, who: str, **want: Any):
    """The predicate of a conference.member event of the member whose target names `who` (a
    moved-in call has no target: "" and its call_id)."""
    return lambda e: (e["type"] == "conference.member" and who in (e["data"]["target"] or "")
                      and all(e["data"].get(k) == v for k, v in want.items()))


async def test_conference_of_the_console_and_two_phones_mute_and_kick(start_gateway, connect, watch, browser) -> None:
    async with BaresipPhone(user="alpha", tone_hz=500) as alpha, BaresipPhone(user="bravo", tone_hz=750) as bravo:
        gw, w, page = await voice_console(start_gateway, connect, watch, browser, alpha=alpha, bravo=bravo)
        await page.fill("#conf-title", "Pier 4 bridge")
        await page.click("#conf-create")
        card = page.locator("section.conference")
        await card.wait_for(timeout=WAIT_MS)
        conf_id = await card.get_attribute("data-conference")
        # Bravo is on a 1:1 call with the console first; alpha is dialled in.
        await page.fill("#voice-target", "bravo")
        await dial_with_enter(page)
        b_call = (await w.call_state(None, "connected", timeout=WAIT_S))["call_id"]
        await page.wait_for_selector(f'tr[data-call="{b_call}"] .voice-audio-stop', timeout=WAIT_MS)
        await card.locator(".conf-target").fill("alpha")
        await card.locator(".conf-add-target").click()
        a_id = (await w.wait(member_event(w, "alpha", state="joined"), timeout=WAIT_S))["data"]["member_id"]
        # The escalation: bravo's call moved in (no new INVITE), the console comes along as a member
        # and its own audio on the call closes.
        await card.locator('select[id^="conf-call-"]').select_option(b_call)
        await card.locator(".conf-add-call").click()
        b_id = (await w.wait(member_event(w, "", state="joined", call_id=b_call), timeout=WAIT_S))["data"]["member_id"]
        await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["console"] and e["data"]["state"] == "joined",
                     timeout=WAIT_S)
        await page.wait_for_selector(f'tr[data-call="{b_call}"] .voice-talk', timeout=WAIT_MS)
        await page.wait_for_selector(".conf-add-console[disabled]", timeout=WAIT_MS)
        # The console hears the phones' mix and talks into it; who talks is shown.
        heard = await poll_until(lambda: page.evaluate("() => window.dispatchAudio.speakerPeak()"), WAIT_S, "the mix")
        await page.wait_for_selector(f'tr[data-member="{b_id}"][data-talking="true"] .talking', timeout=WAIT_MS)
        await screenshot(page, "voice-en")
        await choose_language(page, "zh-CN")
        await page.wait_for_selector('#conf-create:has-text("创建会议")', timeout=WAIT_MS)
        await screenshot(page, "voice-zh-CN")
        await choose_language(page, "en")
        violations = await voice_axe_violations(browser, gw)
        assert not violations, show(violations)

        # Mute alpha: bravo stops hearing alpha's 500 Hz, still hears the console.
        await page.click(f'tr[data-member="{a_id}"] .member-mute')
        await w.wait(member_event(w, "alpha", muted=True), timeout=WAIT_S)
        await page.wait_for_selector(f'tr[data-member="{a_id}"][data-state="muted"] .member-unmute', timeout=WAIT_MS)
        await asyncio.sleep(2.5)  # 2.5 s of the muted mix for bravo to record
        # Kick bravo: its call is hung up (the phone got the BYE), it leaves, removed.
        await page.click(f'tr[data-member="{b_id}"] .member-kick')
        left = await w.wait(member_event(w, "", state="left", call_id=b_call), timeout=WAIT_S)
        await bravo.wait_log("terminated", timeout=WAIT_S)
        await page.wait_for_selector(f'tr[data-member="{b_id}"][data-state="left"]', timeout=WAIT_MS)
        await page.click("section.conference .conf-end")
        await alpha.wait_log("terminated", timeout=WAIT_S)
        await card.wait_for(state="detached", timeout=WAIT_MS)
        b_samples, b_rate = await bravo.recording("dec")
        a_samples, a_rate = await alpha.recording("dec")
    assert left["data"]["cause"] == "removed"
    assert round(heard["hz"] / 250) * 250 in (500, 750), heard  # one of the phones, through the console's speaker
    b = active_span(b_samples, b_rate)
    after = b[-int(1.5 * b_rate):]
    blocks = [b[i:i + b_rate // 2] for i in range(0, len(b) - b_rate // 2, b_rate // 2)]
    assert max(tone_power(x, b_rate, 500) for x in blocks) > 0.1, "bravo heard alpha (moved in, before the mute)"
    assert tone_power(after, b_rate, 500) < 0.01, "bravo still heard alpha after the mute"
    assert tone_power(after, b_rate, CONSOLE_HZ) > 0.1, "bravo heard the console"
    assert tone_power(active_span(a_samples, a_rate), a_rate, CONSOLE_HZ) > 0.05, "alpha heard the console"
    conf_events = [e["data"] for e in w.events if e["type"] == "conference.member" and e["data"]["conference_id"] == conf_id]
    assert any(d["console"] and d["state"] == "left" for d in conf_events)  # the console left with the end


async def voice_axe_violations(browser: ConsoleBrowser, gw: Any) -> list[dict]:
    """axe-core on the Voice view as a second console shows it (calls, the conference), in a
    context of its own: axe's script needs the CSP bypassed, the page under test keeps it."""
    page = await browser.open(gw, bypass_csp=True)
    try:
        await sign_in(page, "tok-dispatcher", "dispatcher")
        await show_view(page, "voice")
        await page.wait_for_selector("section.conference tr[data-member]", timeout=WAIT_MS)
        return await axe_violations(page)
    finally:
        await page.context.close()


async def test_an_observer_sees_calls_and_conferences_and_commands_none(start_gateway, connect, watch, browser) -> None:
    async with BaresipPhone(user="duty") as phone:
        gw = await start_gateway(**directory(duty=phone))
        alice = await connect(gw)
        w = await watch(alice)
        conf = await alice.call("conference.create", title="Yard")
        cid = (await alice.call("call.dial", target="duty"))["call_id"]
        await w.call_state(cid, "connected", timeout=WAIT_S)
        page = await browser.open(gw)
        await sign_in(page, "tok-observer", "observer")
        await show_view(page, "voice")
        row = f'tr[data-call="{cid}"][data-state="connected"]'
        await page.wait_for_selector(row, timeout=WAIT_MS)
        await page.wait_for_selector(f'section.conference[data-conference="{conf["conference_id"]}"]', timeout=WAIT_MS)
        await page.fill("#voice-target", "duty")
        buttons = ["#voice-dial", f"{row} .voice-hangup", f"{row} .voice-hold", f"{row} .voice-talk", f"{row} .voice-listen",
                   "#conf-create", "section.conference .conf-end", "section.conference .conf-add-console"]
        assert [await page.is_disabled(b) for b in buttons] == [True] * len(buttons)
        assert await page.get_attribute(f"{row} .voice-hangup", "title") == "Your role may not do this"
        await alice.call("call.hangup", call_id=cid)
        await page.wait_for_selector(f'tr[data-call="{cid}"][data-state="ended"]', timeout=WAIT_MS)
