"""One loader process's parts (benchmarks/control_loader.py) against the bare reference server in
this process, on loopback: load clients and lean subscribers connect, see each fan-out once, run a
planned load; then the whole benchmark, two loader processes against the bare server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.server import serve

from benchmarks.control_bare import BareServer
from benchmarks.control_loader import LeanSubscriber, Loader
from benchmarks.control_stats import parse_mix, plan_requests

ROOT = Path(__file__).resolve().parents[2]


async def test_load_clients_and_lean_subscribers_see_every_fanout_once() -> None:
    bare = BareServer()
    async with serve(bare.handle, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        loader = Loader(0, 1, url, "t")
        got = await loader.connect(list(range(6)), concurrency=6, lean_from=2)
        assert got["connected"] == 6 and not got["failed"]
        assert sorted(loader.clients) == [0, 1] and sorted(loader.subscribers) == [2, 3, 4, 5]
        assert all(isinstance(s, LeanSubscriber) and s.connected for s in loader.subscribers.values())

        trig = await loader.trigger("fanout-0")
        fan = await loader.wait_fanout(trig["sid"], timeout=10)
        assert fan["count"] == 6 and trig["t0"] <= fan["first"] <= fan["last"]

        plan = plan_requests(40, 400.0, 2, 1, parse_mix("ping=1,session.list=1,session.create=2"), 0)
        part = await loader.steady(plan, time.monotonic() + 0.05, drain_timeout=10)
        assert sum(len(v) for v in part["lat"].values()) == 40 and not part["errors"]
        created = part["created_ok"]
        assert created > 0
        assert (await loader.drain(created, timeout=10))["events"] == created * 6

        totals = loader.totals()
        assert totals["seq_gaps"] == 0 and totals["overflows"] == 0 and totals["still_connected"] == 6
        assert totals["frames_decoded"] == 1 + created  # one per event in this process
        await loader.close(concurrency=6)
        assert not any(s.connected for s in loader.subscribers.values())


def test_the_benchmark_runs_two_loader_processes_against_the_bare_server(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.control_channel", "--against", "bare", "--clients", "30",
         "--load-clients", "6", "--rate", "40", "--duration", "1.5", "--fanout-reps", "2", "--loaders", "2",
         "--json-out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())["bare"]
    assert r["connect"]["connected"] == 30 and r["connect"]["per_loader"] == [15, 15]
    assert r["fanout"]["timeouts"] == 0 and r["fanout"]["min_delivered"] == 30
    load = r["load"]
    assert load["loaders"] == 2 and load["sent"] == 60 and load["ok"] == 60
    assert load["events_received"] == load["events_expected"] == load["rtt"]["session.create"]["n"] * 30
    assert len(load["loader_cpu_pct"]) == 2 and "verdict" in load
    assert r["totals"]["seq_gaps"] == 0 and r["totals"]["still_connected"] == 30
