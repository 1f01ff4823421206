"""The page's cores that touch no DOM and no socket (terminal/inbox.js, link.js's backoff,
position.js's report params), run in Chromium as modules served by the page's own routes on an
http listener of their own (no gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway import http
from gateway.terminal_page import PageConfig, TerminalPage

pytestmark = [pytest.mark.peers, pytest.mark.asyncio(loop_scope="module")]  # Chromium, launched once


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page() -> AsyncIterator:
    from playwright.async_api import async_playwright

    from tests.peers.chromium import launch_chromium

    cfg = PageConfig("/v1/control", False, None, 10, 5)
    listener = await http.start("127.0.0.1", 0, {}, (await TerminalPage.load(cfg, lambda: 9)).routes())
    try:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{http.bound_port(listener)}/terminal/icon.svg")
                yield page
            finally:
                await browser.close()
    finally:
        await listener.cleanup()


INBOX = """async () => {
  const { Inbox, KEEP } = await import('/terminal/inbox.js');
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v),
                    removeItem: (k) => store.delete(k) };
  const box = new Inbox(storage, 'unit-7');
  const push = (id, at) => box.add({ instruction_id: id, text: 'do ' + id, created_at: at, require_ack: true });
  const out = {};
  out.first = push('b', '2026-12-02T00:00:02.000Z');
  out.older = push('a', '2026-12-02T00:00:01.000Z');
  out.repeat = push('b', '2026-12-02T00:00:02.000Z');
  out.noId = box.add({ text: 'no id' });
  out.order = box.list().map((i) => i.instruction_id);
  box.setAck('a', 'wanted');
  out.unsent = box.unsentAcks();
  box.setAck('a', 'done');
  box.setAck('a', 'wanted');  // done stays done
  const again = new Inbox(storage, 'unit-7');  // a reload
  out.reloaded = again.list().map((i) => [i.instruction_id, i.ack]);
  out.repeatAfterReload = again.add({ instruction_id: 'a', text: 'x', created_at: '2026-12-02T00:00:01.000Z' });
  out.other = new Inbox(storage, 'unit-9').list().length;  // per terminal
  for (let n = 0; n < KEEP + 5; n++) again.add({ instruction_id: 'n' + n, text: '', created_at: '2026-12-03T00:00:00.000Z' });
  out.kept = again.list().length;
  out.keptNewest = again.list().at(-1).instruction_id;
  return out;
}"""


async def test_inbox_dedupes_orders_and_survives_a_reload(page) -> None:
    got = await page.evaluate(INBOX)
    assert (got["first"], got["older"], got["repeat"], got["noId"]) == (True, True, False, False)
    assert got["order"] == ["a", "b"]  # by the time given, not by arrival
    assert got["unsent"] == ["a"]
    assert got["reloaded"] == [["a", "done"], ["b", "none"]]
    assert got["repeatAfterReload"] is False and got["other"] == 0
    assert got["kept"] == 200 and got["keptNewest"] == "n204"


async def test_backoff_grows_with_jitter_and_is_capped(page) -> None:
    got = await page.evaluate("""async () => {
      const { backoffDelay, BACKOFF_CAP_MS } = await import('/terminal/link.js');
      return { low: [0, 1, 2, 3].map((a) => backoffDelay(a, () => 0)),
               high: [0, 1, 2, 3].map((a) => backoffDelay(a, () => 1)),
               capped: [10, 40, 1000].map((a) => [backoffDelay(a, () => 0), backoffDelay(a, () => 1)]),
               cap: BACKOFF_CAP_MS };
    }""")
    assert got["low"] == [250, 500, 1000, 2000] and got["high"] == [500, 1000, 2000, 4000]
    assert got["capped"] == [[got["cap"] // 2, got["cap"]]] * 3


async def test_report_params_leave_out_what_the_device_gives_out_of_range(page) -> None:
    got = await page.evaluate("""async () => {
      const { reportParams } = await import('/terminal/position.js');
      const t = Date.UTC(2026, 11, 2, 1, 2, 3, 456);
      return [
        reportParams({ latitude: 31.2, longitude: 121.4, accuracy: 12, altitude: 8, speed: 1.5, heading: 90 }, t, 77),
        reportParams({ latitude: 31.2, longitude: 121.4, accuracy: 250000, altitude: null, speed: -1,
                       heading: 360 }, t, null),
        reportParams({ latitude: 0, longitude: 0, accuracy: 5, altitude: NaN, speed: 351, heading: NaN }, t, 101),
      ];
    }""")
    assert got[0] == {"lat": 31.2, "lon": 121.4, "accuracy_m": 12, "time": "2026-12-02T01:02:03.456Z",
                      "altitude": 8, "speed": 1.5, "heading": 90, "battery": 77}
    assert got[1] == {"lat": 31.2, "lon": 121.4, "accuracy_m": 100000, "time": "2026-12-02T01:02:03.456Z"}
    assert got[2] == {"lat": 0, "lon": 0, "accuracy_m": 5, "time": "2026-12-02T01:02:03.456Z"}


async def test_backlog_keeps_a_long_outage_whole_at_a_coarser_step(page) -> None:
    got = await page.evaluate("""async () => {
      const { Backlog } = await import('/terminal/position.js');
      const b = new Backlog(4);
      const fix = (n) => ({ lat: n, lon: 0, accuracy_m: 1, time: `2026-12-02T00:00:0${n}.000Z` });
      for (const n of [1, 1, 2, 3, 4, 5, 6]) b.add(fix(n));  // the same fix twice: once
      const full = b.items.map((p) => p.lat);
      const taken = b.take().map((p) => p.lat);
      b.add(fix(9));
      b.putBack([fix(7), fix(8)]);  // a resume cut short: the rest first again
      return { full, taken, after: b.items.map((p) => p.lat) };
    }""")
    assert got["full"] == [2, 4, 5, 6]  # full at 4: every other dropped, then the new ones
    assert got["taken"] == [2, 4, 5, 6] and got["after"] == [7, 8, 9]
