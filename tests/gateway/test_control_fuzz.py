"""Control-channel fuzzing against the gateway run as its own process (issue 8 §3).

At least 100,000 hostile frames (tests/gateway/fuzz_control.py, deterministic from a seed: set
FUZZ_SEED to replay a run, FUZZ_FRAMES to change the count) over many connections of every role
and before hello, pipelined on several connections at once. Then: the process is alive, its RSS
has not grown without bound (the 10 % the issue asks for is not met yet: docs/reliability.md), its
log holds no traceback, nothing was answered `internal-error`, every connection closed only the
way the protocol says, normal commands work and the stored events are intact (seq strictly
increasing, no gap). The counts go to the test's output and docs/reliability.md. About a minute on
an idle 2-core machine; the deadlines are for a busy one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import random
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from tests.gateway.fuzz_control import Frame, FrameFuzzer
from tests.gateway.gateway_proc import gateway_proc, store_rows
from tests.gateway.test_listener_limits import hello, overrides

FRAMES = int(os.environ.get("FUZZ_FRAMES", "100000"))
SEED = int(os.environ.get("FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
CONCURRENCY = 8
WARMUP = 5_000  # frames before the RSS baseline is taken
RSS_GROWTH_LIMIT = 1.10  # RSS after the run over the baseline (issue 8: within 10 %)
WINDOW = 100  # frames sent before waiting for a barrier reply: bounded pipelining
MAX_FRAME = 256 * 1024
ROLES = (None, "tok-terminal", "tok-observer", "tok-dispatcher", "tok-admin")
# Closes the protocol allows a fuzzing peer to cause (docs/protocol.md, Transport).
ALLOWED_CLOSES = {"too many failed hellos", "no hello in time"}


@dataclass
class Tally:
    tried: collections.Counter = field(default_factory=collections.Counter)  # frames sent, by kind
    replies: collections.Counter = field(default_factory=collections.Counter)  # by error reason / ok
    closes: collections.Counter = field(default_factory=collections.Counter)  # by "code reason"
    connections: int = 0
    bad: list[str] = field(default_factory=list)  # what must not happen, with where to replay it

    def summary(self) -> str:
        return (f"seed={SEED} frames={sum(self.tried.values())} connections={self.connections}\n"
                f"tried by kind: {dict(self.tried.most_common())}\n"
                f"replies: {dict(self.replies.most_common())}\ncloses: {dict(self.closes.most_common())}")


def plan(seed: int, index: int) -> tuple[str | None, list[Frame]]:
    """Connection `index`'s role and frames: the same for the same seed, whatever the timing."""
    fuzzer = FrameFuzzer(seed * 1_000_003 + index, max_frame=MAX_FRAME)
    role = fuzzer.rng.choice(ROLES)
    n = fuzzer.rng.choice((50, 200, 500, 1000, 1500))
    return role, fuzzer.batch(role, n, close_at_end=fuzzer.rng.random() < 0.15)


async def fuzz_connection(url: str, index: int, tally: Tally) -> int:
    role, frames = plan(SEED, index)
    where = f"seed={SEED} connection={index} role={role}"
    barriers: dict[str, asyncio.Future] = {}
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        ws = await connect(url, max_size=None, ping_interval=None, compression=None, open_timeout=30,
                           close_timeout=10)
        stack.push_async_callback(_close_quietly, ws)
        tally.connections += 1
        if role is not None and "result" not in await hello(ws, role, id="hello"):
            tally.bad.append(f"{where}: hello refused")
            return 0

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for text in ws:
                    reply = json.loads(text)
                    if "error" in reply:
                        reason = reply["error"].get("data", {}).get("reason")
                        tally.replies[reason] += 1
                        if reason == "internal-error":
                            tally.bad.append(f"{where}: internal-error for request id {reply.get('id')}")
                    else:
                        tally.replies["ok" if "result" in reply else "event"] += 1
                    fut = barriers.pop(str(reply.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            for i, frame in enumerate(frames):
                if ws.state is not State.OPEN:
                    break
                try:
                    await ws.send(frame.data, text=frame.text)
                except ConnectionClosed:
                    break
                except AttributeError:
                    # websockets 17 aborts a transport asyncio already closed after flushing it
                    # (a close from the gateway raced this send): the connection is gone.
                    break
                sent += 1
                tally.tried[frame.kind] += 1
                if frame.closes is not None:
                    await asyncio.wait_for(ws.wait_closed(), 30)
                    if ws.close_code != frame.closes:
                        tally.bad.append(f"{where} frame={i} ({frame.kind}): closed {ws.close_code}, "
                                         f"expected {frame.closes}")
                elif (i + 1) % WINDOW == 0 or i == len(frames) - 1:
                    barrier = f"barrier-{i}"
                    fut = barriers[barrier] = asyncio.get_running_loop().create_future()
                    try:
                        await ws.send(json.dumps({"jsonrpc": "2.0", "id": barrier, "method": "ping"}))
                    except (ConnectionClosed, AttributeError):
                        break
                    await asyncio.wait({fut, reader}, timeout=60,
                                       return_when=asyncio.FIRST_COMPLETED)
                    if reader.done():  # the gateway closed the connection
                        break
                    if not fut.done():
                        window = [f.kind for f in frames[max(0, i + 1 - WINDOW):i + 1]]
                        tally.bad.append(f"{where} frames {i + 1 - len(window)}..{i}: no reply to a "
                                         f"ping within 60 s (kinds {collections.Counter(window)})")
                        break
        finally:
            with contextlib.suppress(AttributeError):  # the race described above
                await ws.close()
            await asyncio.wait_for(reader, 30)
        reason = ws.close_reason or ""
        tally.closes[f"{ws.close_code} {reason}".strip()] += 1
        expected = frames[-1].closes if sent == len(frames) else None
        if reason in ALLOWED_CLOSES:
            pass
        elif sent < len(frames):
            tally.bad.append(f"{where}: closed {ws.close_code} {reason!r} after {sent} of {len(frames)} frames")
        elif expected is None and ws.close_code != 1000:
            tally.bad.append(f"{where}: closed {ws.close_code} {reason!r}")
    return sent


async def _close_quietly(ws) -> None:
    with contextlib.suppress(AttributeError):  # see fuzz_connection
        await ws.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def normal_commands_work(url: str) -> None:
    async with connect(url, max_size=None) as ws:
        assert "result" in await hello(ws, "tok-dispatcher")
        for i, (method, params) in enumerate((("ping", {}), ("session.create", {"title": "after fuzz"}),
                                              ("session.list", {}), ("directory.list", {})), start=2):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if reply.get("id") == i:
                    assert "result" in reply, (method, reply)
                    break


async def test_control_channel_survives_100k_hostile_frames(tmp_path) -> None:
    sets = overrides(tmp_path, **{
        # Every fuzzing connection comes from 127.0.0.1: lift what throttles one source, so the
        # frames reach the parser and the handlers instead of a 503 or a rate-limited hello.
        "control.max_connections": 10_000, "control.max_connections_per_source": 10_000,
        "control.hello_failures_burst": 1_000_000, "control.max_hello_failures": 1000,
        "control.max_frame_bytes": MAX_FRAME,
        # The consoles' budgets are lifted so their frames reach the handlers; terminals and
        # observers keep theirs (their floods meet the budget, as in production).
        "control.request_budget.dispatcher": "{rate = 1000000, burst = 1000000}",
        "control.request_budget.admin": "{rate = 1000000, burst = 1000000}",
    })
    tally = Tally()
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        assert gw.proc is not None
        indices = itertools.count()
        total = 0

        async def worker(frames: int) -> None:
            nonlocal total
            while total < frames:
                sent = await fuzz_connection(gw.url, next(indices), tally)
                total += sent  # after the await: `total += await ...` would lose the others' sums

        # Warm-up: what a first burst makes the process load and the allocator keep is in the
        # baseline; the run after it must not grow the process beyond it.
        await asyncio.wait_for(asyncio.gather(*(worker(WARMUP) for _ in range(CONCURRENCY))), 600)
        await normal_commands_work(gw.url)
        baseline, warm_frames = rss_kib(gw.proc.pid), total
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(worker(warm_frames + FRAMES) for _ in range(CONCURRENCY))), 1200)
        elapsed = time.monotonic() - t0
        print(f"\n{tally.summary()}\nelapsed={elapsed:.1f}s rss_kib baseline={baseline}", flush=True)
        assert gw.proc.returncode is None, f"gateway died: {tally.summary()}"
        await normal_commands_work(gw.url)
        deadline, peak = time.monotonic() + 30, rss_kib(gw.proc.pid)
        while (now_rss := rss_kib(gw.proc.pid)) > baseline * 1.10 and time.monotonic() < deadline:  # settling
            await asyncio.sleep(0.5)
        print(f"rss_kib after={now_rss} (peak seen {peak})", flush=True)
        log = gw.log.read_text(errors="replace")
        seqs = [s for (s,) in store_rows(gw.store_path, "SELECT seq FROM events ORDER BY rowid")]
    assert sum(tally.tried.values()) >= warm_frames + FRAMES, tally.summary()
    assert not tally.bad, "\n".join(tally.bad[:20]) + "\n" + tally.summary()
    assert "Traceback" not in log and '"exception"' not in log, (
        f"seed={SEED}: traceback in the gateway log:\n" + log[log.find("Traceback") - 2000:][:6000])
    # Issue 8: RSS within 10 % of the baseline (docs/reliability.md: the in-flight requests of a
    # burst set the allocator's high-water mark; control.max_in_flight defaults to 32 for that).
    assert now_rss <= baseline * RSS_GROWTH_LIMIT, f"seed={SEED}: RSS {now_rss} KiB vs baseline {baseline} KiB"
    assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seed={SEED}: event seqs broken"


def test_the_frames_are_the_same_for_the_same_seed() -> None:
    a, b = plan(1234, 7), plan(1234, 7)
    assert a == b and plan(1235, 7) != a
    kinds = {f.kind for i in range(100) for f in plan(99, i)[1]}  # oversized ends ~15 % of connections
    assert kinds >= {"params", "envelope", "invalid-json", "notification", "batch", "deep", "binary",
                     "hello", "huge", "not-utf8", "oversized"}, kinds
