"""Video benchmark: terminals publishing 640x480 into Janus while consoles watch them.

    python -m benchmarks.video [--peers aiortc|chromium] [--publishers 20] [--consoles 5]
                               [--viewers 1,2,4] [--watch 4] [--duration 20] [--fps 20]

Runs in a network namespace of its own (tests/peers/media_netns.py: loopback ICE is refused), as
root. The gateway runs in its own process (benchmarks/gateway_process.py's `GatewayProcess`,
video enabled, one Janus, its child); every terminal has its own token, is asked by `video.pull`
and publishes through `video.publish`; consoles watch through `video.watch` / `video.answer`.
Janus forwards, never re-encodes. Prints JSON.

`--peers aiortc` (the default; benchmarks/video_replay.py): the full size fits on 2 cores because
no peer encodes or decodes: each publisher sends a VP8 clip encoded once by ffmpeg (its frame
number drawn in), looped at `fps`; each console is a process of its own whose views hash each
received frame to find it in the clip; delay = the frame's last packet at the view - its send by
the publisher (one clock). Phases, `duration` s each: idle, publishers with 0 views, then
`viewers` views per publisher (round robin over the consoles). Janus CPU per publisher =
(0 views - idle) / publishers; per view = the slope of Janus CPU over the number of views.

`--peers chromium`: one headless Chromium holds every peer: each publisher page draws its
wall-clock time into a 640x480 canvas with some motion and publishes it (VP8, encoded by
Chromium) with the fake microphone; each console page watches `watch` streams and reads the time
back from decoded frames (capture-to-display delay). Phases: idle, publishing, watching; per
viewer = (watching - publishing) / viewers. The encoders and decoders share the 2 cores with
Janus: run it small.

Gateway CPU is its process alone (Janus and the SIP worker are its children, measured apart);
`peers` is this process and its children but the gateway's (consoles, Chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.control_stats import pct
from benchmarks.gateway_process import TOKEN, GatewayProcess, _toml_str, children, proc_cpu_s
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


def _gateway(args: argparse.Namespace, netns, work: Path) -> tuple[GatewayProcess, list[str]]:
    """The gateway in its own process, video on (one Janus), a terminal token per publisher."""
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
    return gw, names  # started by the caller, inside its try: a start that times out is stopped too


def _meters(gw: GatewayProcess) -> dict[str, Cpu]:
    """Janus (the gateway's child), the gateway's own process, and this process's peers."""
    janus = [p for p in _descendants(gw.pid) if _comm(p) == "janus"]
    assert janus, "no Janus under the gateway"
    me = os.getpid()

    def peers() -> list[int]:  # this process and its children but the gateway's tree
        theirs = {gw.pid, *_descendants(gw.pid)}
        return [me, *(p for p in _descendants(me) if p not in theirs)]

    return {"janus": Cpu(lambda: janus), "gateway": Cpu(lambda: [gw.pid]), "peers": Cpu(peers)}


async def run_chromium(args: argparse.Namespace, netns) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    gw, names = _gateway(args, netns, work)
    result: dict[str, Any] = {"publishers": args.publishers, "consoles": args.consoles,
                              "watch": args.watch, "fps": args.fps, "duration_s": args.duration}
    try:
        gw.start()
        meters = _meters(gw)
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
        _clean(args, work)
    return result


async def run_aiortc(args: argparse.Namespace, netns) -> dict[str, Any]:
    """Pre-encoded publishers, non-decoding views (benchmarks/video_replay.py): phases with 0 and
    then each of `args.viewers` views per publisher, spread over `args.consoles` consoles."""
    from benchmarks import video_replay as vr

    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    frames = vr.make_clip(work / "clip.webm", args.fps, args.clip_s)
    gw, names = _gateway(args, netns, work)
    result: dict[str, Any] = {"peers": "aiortc, pre-encoded VP8 (no encoder, no decoder)",
                              "publishers": args.publishers, "consoles": args.consoles,
                              "fps": args.fps, "duration_s": args.duration,
                              "clip_kbps": round(sum(map(len, frames)) * 8 * args.fps / len(frames) / 1000),
                              "phases": []}
    log = vr.SendLog(args.publishers, len(frames))
    digests = [vr.digest(f) for f in frames]
    pubs: list[vr.Publisher] = []
    consoles: list[vr.Console] = []
    dispatcher: GatewayClient | None = None
    try:
        gw.start()
        meters = _meters(gw)
        idle = await _phase(args.duration / 2, meters)
        result["idle"] = idle
        dispatcher = await GatewayClient.connect(gw.url, TOKEN)
        pubs = [vr.Publisher(gw.url, f"tok-terminal-{n}", frames, args.fps, log.of(i))
                for i, n in enumerate(names)]
        for p in pubs:
            await p.start()
        streams = [(await dispatcher.call("video.pull", terminal_id=n))["stream_id"] for n in names]
        async with asyncio.timeout(180):
            await asyncio.gather(*(p.published.wait() for p in pubs))
        await _until_all(lambda: _states(dispatcher, streams, "publishing"), 120, "every stream publishing")
        print(f"video: {len(streams)} streams publishing", file=sys.stderr, flush=True)
        consoles = [vr.Console(gw.url, TOKEN, digests, log) for _ in range(args.consoles)]
        views = 0
        for per_pub in [0, *args.viewers]:
            mine: list[list[tuple[str, int]]] = [[] for _ in consoles]
            for i in range(views, per_pub * len(pubs)):  # round robin over the consoles
                mine[i % len(consoles)].append((streams[i % len(streams)], i % len(streams)))
            views = max(views, per_pub * len(pubs))
            print(f"video: {per_pub} views per publisher ({views})", file=sys.stderr, flush=True)
            for reply in await asyncio.gather(*(c.ask("watch", m) for c, m in zip(consoles, mine))):
                if reply != "ok":
                    raise RuntimeError(f"a console: {reply}")
            f0 = [await c.ask("sample") for c in consoles]  # clears the delays too
            t0 = time.monotonic()
            cpu = await _phase(args.duration, meters)
            f1 = [await c.ask("sample") for c in consoles]
            span = time.monotonic() - t0
            fps = [(b - a) / span for (s0, _), (s1, _) in zip(f0, f1) for a, b in zip(s0, s1)]
            delays = sorted(d for _, ds in f1 for d in ds)
            result["phases"].append({
                "views_per_publisher": per_pub, "views": views, "cpu_pct": cpu,
                "viewer_fps": {"p50": _r(pct(fps, 50)), "p10": _r(pct(fps, 10)), "min": _r(min(fps, default=None))},
                "delay_ms": {"n": len(delays), "p50": _r(pct(delays, 50)), "p95": _r(pct(delays, 95)),
                             "max": _r(delays[-1] if delays else None)}})
        _costs(result, idle)
        for sid in streams:
            await dispatcher.call("video.stop", stream_id=sid)
    finally:
        for c in consoles:
            await c.stop()
        for p in pubs:
            await p.close()
        if dispatcher is not None:
            await dispatcher.close()
        gw.stop()
        log.close(unlink=True)
        _clean(args, work)
    return result


def _clean(args: argparse.Namespace, work: Path) -> None:
    """The run's dir (gateway log, recordings: hundreds of MB at full size) goes unless --keep."""
    if args.keep:
        print(f"video: kept {work}", file=sys.stderr, flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _costs(result: dict[str, Any], idle: dict[str, float]) -> None:
    """Janus per publisher (publishing - idle) / publishers; per view: the least-squares slope of
    Janus CPU over the number of views, across the phases (0, 1, 2, 4 views per publisher)."""
    phases = result["phases"]
    result["janus_pct_per_publisher"] = round((phases[0]["cpu_pct"]["janus"] - idle["janus"])
                                              / result["publishers"], 3)
    xs = [p["views"] for p in phases]
    ys = [p["cpu_pct"]["janus"] for p in phases]
    if len(xs) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        result["janus_pct_per_view"] = round(slope, 3)
    result["gateway_pct"] = {"idle": idle["gateway"], **{f"{p['views']} views": p["cpu_pct"]["gateway"]
                                                         for p in phases}}


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--consoles", type=int, default=5)
    ap.add_argument("--watch", type=int, default=4, help="streams each console watches")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per measured phase")
    ap.add_argument("--fps", type=int, default=20)
    ap.add_argument("--peers", choices=("aiortc", "chromium"), default="aiortc",
                    help="aiortc: pre-encoded publishers, non-decoding views (full size on 2 cores); "
                         "chromium: real encoders and decoders, a timestamp read back from the pixels")
    ap.add_argument("--viewers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4],
                    help="aiortc: views per publisher in the phases after 0 (comma-separated)")
    ap.add_argument("--clip-s", type=float, default=10.0, help="aiortc: length of the looped clip")
    ap.add_argument("--keep", action="store_true", help="keep the run's dir (gateway log, recordings)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = run_aiortc if args.peers == "aiortc" else run_chromium
    from benchmarks.video_replay import quiet_logs

    quiet_logs()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it stuck
    with media_namespace() as netns:
        result = asyncio.run(run(args, netns))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
