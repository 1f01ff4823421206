"""The two indicators measured by the gateway itself (issue 12), against the gateway as its own
process and real peers: SIPp phones (one answering after its deadline), a SIP worker killed by
PID, the Twilio stub delivering an SMS, the gateway itself stopped and killed. Every figure is
read back after a restart and must not change: they are computed from the store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.client import GatewayClient, RemoteError
from gateway.kpi.config import KpiConfig
from gateway.timeutil import epoch_to_iso, iso_to_epoch
from tests.gateway.gateway_proc import GatewayProc, gateway_proc, store_rows, wait_until
from tests.gateway.test_sms_crash import sms_gateway_overrides
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.prism import repo_root
from tests.peers.sipp import sipp_uas, sipp_uas_late
from tests.peers.twilio_stub import twilio_stub

pytestmark = pytest.mark.peers

CALL_DEADLINE_S = 1.0
LATE_MS = 2500  # the late phone answers this long after ringing: 1.5 s or more past the deadline


def _overrides(tmp_path: Path, api_base: str = "http://127.0.0.1:9", **more: Any) -> dict[str, Any]:
    o = sms_gateway_overrides(tmp_path / "data", api_base, rate_per_s=10, burst=5)
    o.update({"sip.warm_workers": 1, "kpi.probe_interval_s": 0.5, "kpi.probe_timeout_s": 5,  # a loaded machine
              "kpi.call_deadline_s": CALL_DEADLINE_S, "kpi.sms_deadline_s": 30, "kpi.metrics_interval_s": 0.5,
              **more})
    return o


async def _rpc(url: str, method: str, token: str = "tok-dispatcher", **params: Any) -> dict:
    client = await GatewayClient.connect(url, token, reconnect=False)
    try:
        return await client.call(method, **params)
    finally:
        await client.close()


def _figures(r: dict) -> dict:
    """What must not change after a restart: everything but when it was computed."""
    return {k: v for k, v in r.items() if k != "generated_at"}


async def _started_runs(gw: GatewayProc, n: int) -> None:
    """The gateway answers on its control port before its probe loop has started the run."""
    await wait_until(lambda: store_rows(gw.store_path, "SELECT COUNT(*) FROM kpi_runs")[0][0] >= n, 30,
                     f"run {n} started", step=0.05)


async def _dial_and_wait_answer(gw: GatewayProc, target: str) -> str:
    call = await _rpc(gw.url, "call.dial", target=target)
    cid = call["call_id"]
    await wait_until(lambda: store_rows(gw.store_path, "SELECT answered_at FROM calls WHERE call_id = ?",
                                        (cid,)) not in ([], [(None,)]), 20, "the call answered", step=0.05)
    await _rpc(gw.url, "call.hangup", call_id=cid)
    await wait_until(lambda: store_rows(gw.store_path, "SELECT ended_at FROM calls WHERE call_id = ?",
                                        (cid,)) != [(None,)], 20, "the call ended", step=0.05)
    return cid


def _worker_pid(gw: GatewayProc) -> int:
    ups = gw.log_events(gw.starts, "sip.worker.up")
    assert ups, "no sip.worker.up in the log"
    return int(ups[-1]["pid"])


async def test_late_call_killed_worker_and_the_same_figures_after_a_restart(tmp_path: Path) -> None:
    ov = _overrides(tmp_path, **{"sms.provider": "none"})
    async with gateway_proc(ov, tmp_path) as gw:
        await gw.start()
        since = epoch_to_iso(time.time() - 1)
        await _started_runs(gw, 1)
        async with sipp_uas_late(LATE_MS) as late_phone:
            late = await _dial_and_wait_answer(gw, late_phone.uri)
        async with sipp_uas("answer") as phone:
            prompt = await _dial_and_wait_answer(gw, phone.uri)

        # kill -9 of the SIP worker the gateway started, by its PID (from the gateway's log)
        pid = _worker_pid(gw)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: gw.log_events(1, "sip.worker.restarted"), 30, "the worker restarted", step=0.05)
        await wait_until(lambda: store_rows(gw.store_path, "SELECT COUNT(*) FROM kpi_part_states WHERE part = 'sip'"
                                            " AND up = 1 AND cause = ''")[0][0] >= 1, 20, "sip up again", step=0.05)
        back_at = time.time()  # its return was stored by then
        until = epoch_to_iso(time.time())
        first = await _rpc(gw.url, "kpi.get", since=since, until=until)

        t = first["timeliness"]
        assert (t["channels"]["call"]["met"], t["channels"]["call"]["missed"]) == (1, 1), t
        (miss,) = t["misses"]
        assert (miss["ref"], miss["channel"], miss["reached"]) == (late, "call", True), miss
        assert LATE_MS / 1000 - CALL_DEADLINE_S - 0.2 <= miss["late_s"] < LATE_MS / 1000 + 5, miss
        assert miss["target"].startswith("sip:") and miss["why"] == "connected late"
        assert prompt not in json.dumps(t["misses"])

        a = first["availability"]
        sip = [o for o in a["outages"] if o["part"] == "sip"]
        assert len(sip) == 1, a["outages"]
        (o,) = sip
        assert f"exited (rc -{signal.SIGKILL})" in o["cause"] and not o["ongoing"], o
        assert killed_at - 0.5 <= iso_to_epoch(o["start"]) <= killed_at + 5, (o, killed_at)
        assert 0 < o["duration_s"] <= back_at - killed_at + 0.01, (o, back_at - killed_at)
        assert a["parts"]["sip"]["availability"] < 1.0
        assert a["whole"]["availability"] == a["parts"]["sip"]["availability"]  # the only part down
        assert a["whole"]["parts"] == ["store", "sip", "disk"]
        assert a["parts"]["store"]["availability"] == 1.0 and a["parts"]["disk"]["availability"] == 1.0

        # the CLI prints the same figures
        env = {**os.environ, "DISPATCH_URL": gw.url, "DISPATCH_TOKEN": "tok-observer",
               "PYTHONPATH": str(repo_root())}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "kpi", "--since", since, "--until", until, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=repo_root())
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err.decode()
        assert _figures(json.loads(out)) == _figures(first)
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "kpi", "--since", since, "--until", until,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=repo_root())
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        text = out.decode()
        assert cli.returncode == 0 and "normal operation:" in text and "timeliness: 50.00 %" in text, text
        assert f"({late}): " in text and "exited (rc -9)" in text, text

        # terminals may not read the figures
        with pytest.raises(RemoteError) as refused:
            await _rpc(gw.url, "kpi.get", token="tok-terminal", since=since)
        assert refused.value.reason == "forbidden"

        # the daily report: self-contained HTML with charts, to reading tokens only
        http = f"http://127.0.0.1:{ov['http.port']}"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{http}/v1/kpi/reports/today", headers={"Authorization": "Bearer tok-observer"}) as r:
                assert r.status == 200 and r.content_type == "text/html"
                page = await r.text()
            for token, status in (("tok-terminal", 403), ("wrong", 401)):
                async with s.get(f"{http}/v1/kpi/reports/today", headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == status
        assert "<svg" in page and "exited (rc -9)" in page and late in page
        assert "src=" not in page and "href=" not in page and "@import" not in page and "url(" not in page
        day = first["until"][:10]
        assert (tmp_path / "data" / "reports" / f"kpi-{day}.html").is_file()

        # /metrics: each part's state now, the last 24 h's figures (refreshed every 0.5 s here)
        async with aiohttp.ClientSession() as s:
            async def scrape() -> dict[tuple[str, str], float]:
                async with s.get(f"{http}/metrics") as r:
                    assert r.status == 200
                    return {(f.name, next(iter(x.labels.values()), "")): x.value
                            for f in text_string_to_metric_families(await r.text()) for x in f.samples
                            if f.name.startswith(("dispatch_part_up", "dispatch_availability", "dispatch_timeliness"))}
            async with asyncio.timeout(20):
                while (m := await scrape()).get(("dispatch_timeliness_misses", "call")) != 1:
                    await asyncio.sleep(0.1)
        assert m[("dispatch_part_up", "sip")] == 1 and m[("dispatch_part_up", "store")] == 1
        assert m[("dispatch_availability_ratio", "sip")] < 1 and m[("dispatch_availability_ratio", "whole")] < 1
        assert m[("dispatch_timeliness_ratio", "call")] == 0.5 and m[("dispatch_timeliness_ratio", "all")] == 0.5

        # the same figures after a restart (a clean stop: the time it was stopped is down, later)
        await gw.stop()
        await gw.start()
        await _started_runs(gw, 2)
        again = await _rpc(gw.url, "kpi.get", since=since, until=until)
        assert _figures(again) == _figures(first)
        later = await _rpc(gw.url, "kpi.get", since=since)
        gaps = [o for o in later["availability"]["outages"] if o["part"] == "gateway"]
        assert len(gaps) == 1 and "stopped at" in gaps[0]["cause"] and gaps[0]["duration_s"] > 0, gaps

        # an auditor's reading of the store file itself, the gateway stopped: the same figures
        await gw.stop()
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "kpi", "--since", since, "--until", until, "--json",
            "--db", gw.store_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(repo_root())}, cwd=repo_root())
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err.decode()
        offline = json.loads(out)
        assert offline.pop("source") == {"store": gw.store_path, "last_run_running": False}
        assert offline["deadlines"] == KpiConfig().deadlines()  # no configuration given: the defaults
        offline["deadlines"] = first["deadlines"]  # each target was judged by its run's deadlines
        assert _figures(offline) == _figures(first)


async def test_sms_in_time_maintenance_and_a_killed_gateway(tmp_path: Path) -> None:
    async with twilio_stub(SID, TOKEN) as stub:
        async with gateway_proc(_overrides(tmp_path, stub.url), tmp_path) as gw:
            await gw.start()
            since = epoch_to_iso(time.time() - 1)
            sent = await _rpc(gw.url, "sms.send", to=["+8613800138000"], body="Report to the river gate")
            await wait_until(lambda: store_rows(gw.store_path, "SELECT state FROM sms") == [("delivered",)],
                             30, "the SMS delivered", step=0.05)
            t = (await _rpc(gw.url, "kpi.get", since=since))["timeliness"]
            assert t["channels"]["sms"] == {"met": 1, "missed": 0, "pending": 0, "share": 1.0}, t
            assert t["share"] == 1.0 and t["misses"] == [] and sent["send_id"]

            # maintenance: admin only, reported apart
            start, end = epoch_to_iso(time.time() - 0.5), epoch_to_iso(time.time() + 3600)
            with pytest.raises(RemoteError) as refused:
                await _rpc(gw.url, "kpi.maintenance.add", start=start, end=end, reason="x")
            assert refused.value.reason == "forbidden"
            with pytest.raises(RemoteError) as refused:  # no Janus here
                await _rpc(gw.url, "kpi.maintenance.add", token="tok-admin", start=start, end=end,
                           parts=["media"], reason="x")
            assert refused.value.reason == "no-such-part" and refused.value.details["parts"] == ["media"]
            with pytest.raises(RemoteError) as refused:  # declared after the fact: it would hide an outage
                await _rpc(gw.url, "kpi.maintenance.add", token="tok-admin", start=epoch_to_iso(time.time() - 120),
                           end=end, parts=["sms"], reason="after the fact")
            assert refused.value.reason == "maintenance-in-past" and refused.value.details["grace_s"] == 60
            m = await _rpc(gw.url, "kpi.maintenance.add", token="tok-admin", start=start, end=end,
                           parts=["sms"], reason="provider migration")
            assert m["parts"] == ["sms"] and m["created_by"] == "root"

            # kill -9 of the gateway: down from its last heartbeat to the next start
            await wait_until(lambda: store_rows(gw.store_path, "SELECT last_seen > started_at FROM kpi_runs")
                             == [(1,)], 20, "a heartbeat", step=0.05)
            await gw.kill9()
            killed_at = time.time()
            (last_seen,) = store_rows(gw.store_path, "SELECT last_seen FROM kpi_runs")[0]
            await asyncio.sleep(1.0)  # the gateway stays dead a while (not a wait for an event: the outage itself)
            await gw.start()
            await _started_runs(gw, 2)
            started_by = time.time()
            r = await _rpc(gw.url, "kpi.get", since=since)
            (gap,) = [o for o in r["availability"]["outages"] if o["part"] == "gateway"]
            assert abs(iso_to_epoch(gap["start"]) - iso_to_epoch(last_seen)) < 0.002, (gap, last_seen)
            assert "killed or crashed" in gap["cause"], gap
            assert 1.0 <= gap["duration_s"] <= started_by - iso_to_epoch(last_seen) + 0.01, gap
            assert r["availability"]["whole"]["availability"] < 1.0
            (w,) = r["availability"]["maintenance"]
            assert (w["parts"], w["reason"], w["created_by"]) == (["sms"], "provider migration", "root")
            assert r["timeliness"]["channels"]["sms"]["met"] == 1


async def test_the_kamailio_front_is_a_part_and_its_death_an_outage(start_gateway, connect) -> None:
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.warm_workers": 2, "kpi.probe_interval_s": 0.3,
                                "kpi.probe_timeout_s": 5})  # OPTIONS answered within 2.5 s on a loaded machine
    assert gw.front is not None and gw.front.pid
    since = epoch_to_iso(time.time() - 1)
    olga = await connect(gw, "tok-observer")
    first = (await olga.call("kpi.get", since=since))["availability"]
    assert first["parts"]["front"]["availability"] == 1.0 and first["parts"]["sip"]["availability"] == 1.0
    assert "front" in first["whole"]["parts"] and first["outages"] == []
    # The front the gateway started, with its children (its own session: killing only the main
    # process leaves the children answering OPTIONS). The gateway starts it again (sip/kamailio.py
    # KamailioFront._supervise): the outage ends.
    first_pid = gw.front.pid
    os.killpg(first_pid, signal.SIGKILL)
    killed_at = time.time()
    async with asyncio.timeout(30):
        while True:
            a = (await olga.call("kpi.get", since=since))["availability"]
            front = [o for o in a["outages"] if o["part"] == "front"]
            if front and not front[-1]["ongoing"]:
                break
            await asyncio.sleep(0.1)
    (o,) = front
    assert "not answering OPTIONS" in o["cause"] and gw.front.pid not in (None, first_pid), o
    assert killed_at - 0.1 <= iso_to_epoch(o["start"]) <= killed_at + 5, (o, killed_at)
    assert a["parts"]["front"]["availability"] < 1.0 and a["whole"]["availability"] < 1.0
    assert a["parts"]["sip"]["availability"] == 1.0  # the workers still answer on their own addresses


async def test_a_broadcast_target_connected_late_is_a_miss(start_gateway, connect, watch) -> None:
    async with sipp_uas("answer") as prompt, sipp_uas_late(2500) as late:
        gw = await start_gateway(**{"kpi.broadcast_deadline_s": 1.0, "broadcast.answer_timeout_s": 10,
                                    "directory.endpoint": f'[{{name = "spk-gate", uri = "{prompt.uri}"}},'
                                                          f' {{name = "spk-yard", uri = "{late.uri}"}}]'})
        since = epoch_to_iso(time.time() - 1)
        alice = await connect(gw)
        w = await watch(alice)
        b = await alice.call("broadcast.start", targets=["spk-gate", "spk-yard"], chime=False,
                             source={"type": "tone", "seconds": 4})
        await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["broadcast_id"] == b["broadcast_id"]
                     and e["data"]["state"] == "ended", 30)
        t = (await alice.call("kpi.get", since=since))["timeliness"]
    assert t["channels"]["broadcast"] == {"met": 1, "missed": 1, "pending": 0, "share": 0.5}, t
    (miss,) = t["misses"]
    assert (miss["ref"], miss["target"], miss["reached"], miss["why"]) == (b["broadcast_id"], "spk-yard", True,
                                                                         "connected late"), miss
    assert 1.0 <= miss["late_s"] < 10, miss


async def test_an_instruction_acknowledged_late_is_a_miss(start_gateway, connect) -> None:
    from tests.gateway.test_instructions import first
    from tests.gateway.test_terminals import TERMINALS

    gw = await start_gateway(**{"directory.endpoint": TERMINALS, "kpi.instruction_deadline_s": 4.0})
    since = epoch_to_iso(time.time() - 1)
    alice = await connect(gw)
    unit7, unit9 = await connect(gw, "tok-terminal"), await connect(gw, "tok-terminal-9")
    sent = await alice.call("terminal.instruct", targets=["unit-7", "unit-9"], text="Close the east sluice",
                            ack_timeout_s=60)
    iid = sent["instruction_id"]
    assert (await first(unit7))["instruction_id"] == iid and (await first(unit9))["instruction_id"] == iid
    await unit7.ack(iid)

    async def misses() -> list[dict]:
        return (await alice.call("kpi.get", since=since))["timeliness"]["misses"]

    async with asyncio.timeout(20):  # unit-9 holds it, unacknowledged, past its deadline
        while not (m := await misses()):
            await asyncio.sleep(0.1)
    assert [(x["target"], x["reached"], x["why"]) for x in m] == [("unit-9", False, "not acknowledged (delivered)")]
    await unit9.ack(iid)
    t = (await alice.call("kpi.get", since=since))["timeliness"]
    assert (t["channels"]["instruction"]["met"], t["channels"]["instruction"]["missed"]) == (1, 1), t
    (miss,) = t["misses"]
    assert (miss["ref"], miss["target"], miss["reached"], miss["why"]) == (iid, "unit-9", True, "acknowledged late")
    assert miss["late_s"] > 0
