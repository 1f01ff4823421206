"""Video benchmark: terminals publishing 640x480 into Janus while consoles watch them.

    python -m benchmarks.video [--publishers 20] [--consoles 5] [--watch 4] [--duration 20] [--fps 20]

Runs in a network namespace of its own (tests/peers/media_netns.py: loopback ICE is refused), as
root. The gateway runs in its own process (benchmarks/control_channel.py's `GatewayProcess`,
video enabled, one Janus); one headless Chromium (Debian's) holds every peer: each publisher
page is a terminal (its own token) that draws its wall-clock time into a 640x480 canvas with
some motion and publishes it (VP8, encoded by Chromium once per publisher) with the fake
microphone when pulled; each console page watches `watch` streams, one RTCPeerConnection each,
and reads the time back from decoded frames (capture-to-display delay; one clock). Janus
forwards, never re-encodes.

Phases, each `duration` s: idle (Janus and gateway with nothing to do); publishers only (every
terminal pulled and publishing, nobody watching); publishers + viewers. Janus CPU per publisher =
(publishing - idle) / publishers; per viewer = (watching - publishing) / viewers; gateway CPU
in each phase (its process alone; Janus and the SIP worker are its children, measured apart);
frame rate per view; delay percentiles; Chromium's CPU (all its processes). Prints JSON.
The encoders and decoders (Chromium) share the machine's cores with Janus and the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.control_channel import TOKEN, GatewayProcess, _toml_str, children, pct, proc_cpu_s
from gateway.client import GatewayClient
from tests.peers.chromium import CHROMIUM, CHROMIUM_ARGS, open_page, page_html
from tests.peers.media_netns import media_namespace
from tests.peers.ports import free_port_block

PAGES = Path(__file__).resolve().parent / "video_pages"
EXTRA_ARGS = ("--disable-background-timer-throttling", "--disable-renderer-backgrounding",
              "--disable-backgrounding-occluded-windows")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Cpu:
    """CPU seconds of a set of processes, sampled at the start and end of a phase."""

    def __init__(self, pids) -> None:
        self.pids = pids  # a callable: the pids now (processes come and go)

    def now(self) -> float:
        return sum(filter(None, (proc_cpu_s(p) for p in self.pids())))


async def _phase(duration: float, meters: dict[str, Cpu]) -> dict[str, float]:
    before = {k: m.now() for k, m in meters.items()}
    t0 = time.monotonic()
    await asyncio.sleep(duration)  # the measured window
    span = time.monotonic() - t0
    return {k: round(100 * (m.now() - before[k]) / span, 2) for k, m in meters.items()}


async def run(args: argparse.Namespace, netns) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    names = [f"t{i:02d}" for i in range(args.publishers)]
    tokens = {f"tok-terminal-{n}": (n, "terminal") for n in names}
    token_table = ", ".join([f"{_toml_str(TOKEN)} = {{principal = \"bench\", role = \"dispatcher\"}}"]
                            + [f"{_toml_str(t)} = {{principal = \"{p}\", role = \"{r}\"}}"
                               for t, (p, r) in tokens.items()])
    endpoints = ", ".join(f'{{name = "{n}", kind = "terminal"}}' for n in names)
    rtp = free_port_block(span=2000, tcp=False)
    gw = GatewayProcess(work, "info", extra={
        "auth.tokens": "{" + token_table + "}", "directory.endpoint": f"[{endpoints}]",
        "video.enabled": "true", "video.ws_base_port": str(free_port_block(span=2)),
        "video.ice_enforce_list": netns.janus_if, "video.rtp_port_min": str(rtp),
        "video.rtp_port_max": str(rtp + 1999), "video.publish_timeout_s": "120"})
    result: dict[str, Any] = {"publishers": args.publishers, "consoles": args.consoles,
                              "watch": args.watch, "fps": args.fps, "duration_s": args.duration}
    try:
        gw.start()  # inside: a start that times out is stopped too (with its Janus)
        janus = [p for p in _descendants(gw.pid) if _comm(p) == "janus"]
        assert janus, "no Janus under the gateway"
        me = os.getpid()
        meters = {"janus": Cpu(lambda: janus), "gateway": Cpu(lambda: [gw.pid]),
                  "chromium": Cpu(lambda: [p for p in _descendants(me) if _comm(p).startswith("chrom")])}
        from playwright.async_api import async_playwright

        async with async_playwright() as pw:
            # the tests' switches, and no throttling of pages that are not in front
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=[*CHROMIUM_ARGS, *EXTRA_ARGS])
            bench_js = (PAGES / "bench.js").read_text()
            html = page_html("peer.html", "control_peer.js") + f"<script>\n{bench_js}\n</script>\n"
            context = await browser.new_context()
            result["idle"] = await _phase(args.duration / 2, meters)
            dispatcher = await GatewayClient.connect(gw.url, TOKEN)
            pubs = []
            for i, n in enumerate(names):
                page = await open_page(context, f"http://localhost/pub/{n}", html)
                await page.evaluate("([u, t]) => connect(u, t)", [gw.url, f"tok-terminal-{n}"])
                await page.evaluate("fps => benchPublishWhenAsked(fps)", args.fps)
                pubs.append(page)
            streams = [(await dispatcher.call("video.pull", terminal_id=n))["stream_id"] for n in names]
            await _until_all(lambda: _states(dispatcher, streams, "publishing"), 120, "every stream publishing")
            result["publishing"] = await _phase(args.duration, meters)
            consoles = []
            for c in range(args.consoles):
                page = await open_page(context, f"http://localhost/console/{c}", html)
                await page.evaluate("([u, t]) => connect(u, t)", [gw.url, TOKEN])
                mine = [streams[(c * args.watch + j) % len(streams)] for j in range(args.watch)]
                await page.evaluate("s => benchWatch(s)", mine)
                consoles.append(page)
            await _until_all(lambda: _all_decoding(consoles), 60, "every view decoding")
            for page in consoles:
                await page.evaluate("benchStats()")  # start the delay samples afresh
            t0 = time.monotonic()
            f0 = [await page.evaluate("benchStats()") for page in consoles]
            result["watching"] = await _phase(args.duration, meters)
            f1 = [await page.evaluate("benchStats()") for page in consoles]
            span = time.monotonic() - t0
            fps = [(b - a) / span for s0, s1 in zip(f0, f1)
                   for a, b in zip(s0["frames"], s1["frames"])]
            delays = sorted(d for s in f1 for d in s["delays"])
            viewers = args.consoles * args.watch
            pub_cost = result["publishing"]["janus"] - result["idle"]["janus"]
            view_cost = result["watching"]["janus"] - result["publishing"]["janus"]
            result["janus_pct_per_publisher"] = round(pub_cost / args.publishers, 3)
            result["janus_pct_per_viewer"] = round(view_cost / viewers, 3)
            result["viewer_fps"] = {k: round(v, 1) if v is not None else None for k, v in
                                    {"p10": pct(fps, 10), "p50": pct(fps, 50), "min": min(fps, default=None)}.items()}
            result["delay_ms"] = {"n": len(delays), "p50": pct(delays, 50), "p95": pct(delays, 95),
                                  "max": delays[-1] if delays else None}
            for sid in streams:
                await dispatcher.call("video.stop", stream_id=sid)
            await dispatcher.close()
            await browser.close()
    finally:
        gw.stop()
    return result


async def _states(client: GatewayClient, streams: list[str], state: str) -> bool:
    for s in streams:
        if (await client.call("video.get", stream_id=s))["state"] != state:
            return False
    return True


async def _all_decoding(pages) -> bool:
    for page in pages:
        if not all(f > 0 for f in (await page.evaluate("benchStats()"))["frames"]):
            return False
    return True


async def _until_all(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)  # polling the gateway and getStats: no event to wait on


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--consoles", type=int, default=5)
    ap.add_argument("--watch", type=int, default=4, help="streams each console watches")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per measured phase")
    ap.add_argument("--fps", type=int, default=20)
    args = ap.parse_args(argv)
    with media_namespace() as netns:
        result = asyncio.run(run(args, netns))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
