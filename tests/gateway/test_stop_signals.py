"""Stops made by a service manager or a container, against the gateway run as its own process.

The gateway (`python -m gateway.cli serve`) runs in a session of its own, so a signal to its
process group reaches only it and its SIP workers (what `timeout` and a shell's job control do);
Kamailio is in front (two workers). With live calls (an inbound call through the front from SIPp, answered by
the console; outbound calls to SIPp and to baresip; a broadcast paging SIPp), each signal must
give every far end a BYE, end the broadcast, flush the records, restart no worker and exit
within 5 s. After `kill -9` no child survives, and a start on the same ports works; a start on a
taken port refuses, naming the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.client import GatewayClient
from tests.gateway.conftest import EventWatch
from tests.gateway.gateway_proc import GatewayProc, store_rows
from tests.peers.baresip import BaresipPhone
from tests.peers.ports import free_port_block, free_tcp_port
from tests.peers.sipp import _BYE_OK, SDP, XML_HEAD, Sipp, sipp_uas, uac_request
from tests.sip.conftest import probed_calls_per_worker

pytestmark = pytest.mark.peers

STOP_WITHIN_S = 5.0

# A caller into the gateway that stays on the line until the gateway hangs up.
UAC_AWAIT_BYE = (
    XML_HEAD + '<scenario name="uac-await-bye">\n'
    + uac_request("INVITE", 1, uri="sip:[service]@[remote_ip]:[remote_port]",
                  to="To: <sip:[service]@[remote_ip]:[remote_port]>", routes=False, sdp=SDP)
    + '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    + '  <recv response="183" optional="true"/>\n  <recv response="200" rtd="true" rrs="true"/>\n'
    + uac_request("ACK", 1, retrans=False)
    + _BYE_OK + "</scenario>\n"
)


def overrides(tmp: Path, **more: Any) -> dict[str, Any]:
    sip = free_port_block(span=40)
    return {
        "gateway.data_dir": str(tmp / "data"), "gateway.log_format": "json", "gateway.log_level": "info",
        "control.port": free_tcp_port(), "http.port": free_tcp_port(),
        "sip.proxy": "auto", "sip.port": sip, "sip.worker_base_port": sip + 10,
        "sip.rtp_port_base": free_port_block(span=10, tcp=False), "sip.max_workers": 2,
        "sip.warm_workers": 2, "sip.calls_per_worker": probed_calls_per_worker(),
        "sip.log_dir": str(tmp / "sip-logs"), **more,
    }


@contextlib.asynccontextmanager
async def running(sets: dict[str, Any], log_dir: Path):
    gw = GatewayProc(sets, log_dir, new_session=True)
    try:
        yield gw
    finally:
        await gw.stop()
        for start in range(1, gw.starts + 1):  # whatever it left behind (a failed run), by PID
            kids = children(gw, start)
            for pid in kids["front"]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # Kamailio runs in a session of its own
            for pid in kids["workers"]:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def children(gw: GatewayProc, start: int) -> dict[str, list[int]]:
    """PIDs of the workers and the front this run of the gateway started (from its log)."""
    return {"workers": [e["pid"] for e in gw.log_events(start, "sip.worker.up")],
            "front": [e["pid"] for e in gw.log_events(start, "kamailio.started")]}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.asynccontextmanager
async def console(gw: GatewayProc):
    """A dispatcher's client on `gw`, subscribed, with a watch on its events."""
    client = await GatewayClient.connect(gw.url, "tok-dispatcher", reconnect=False)
    await client.subscribe(client.hello["seq"])
    w = EventWatch(client)
    try:
        yield client, w
    finally:
        await w.close()
        with contextlib.suppress(Exception):
            await client.close()


async def dial_connected(client: GatewayClient, w: EventWatch, target: str) -> str:
    call_id = (await client.call("call.dial", target=target))["call_id"]
    await w.call_state(call_id, "connected", timeout=20)
    return call_id


async def live_calls(client: GatewayClient, w: EventWatch, caller: Sipp, uas: Sipp, spk: Sipp,
                     phone: BaresipPhone) -> tuple[list[str], str]:
    """An inbound call through the front from `caller` (answered), outbound calls to SIPp and
    baresip, and a broadcast paging SIPp: all connected. Their call ids and the broadcast id."""
    await caller.start()
    ringing = await w.call_state(None, "ringing", timeout=20)
    await client.call("call.answer", call_id=ringing["call_id"])
    await w.call_state(ringing["call_id"], "connected", timeout=20)
    ids = [ringing["call_id"]] + [await dial_connected(client, w, t) for t in (uas.uri, phone.uri)]
    b = await client.call("broadcast.start", targets=[spk.uri], chime=False,
                          source={"type": "tone", "frequency": 800, "seconds": 120})
    await w.wait(lambda e: e["type"] == "broadcast.target" and e["data"]["state"] == "connected", 20)
    await phone.wait_log("incoming rtp for 'audio' established")
    return ids, b["broadcast_id"]


CASES = {
    "sigterm-to-the-gateway": (signal.SIGTERM, False),  # docker stop
    "sigterm-to-its-group": (signal.SIGTERM, True),  # `timeout`, a shell's job control
    "sigint-to-the-gateway": (signal.SIGINT, False),  # Ctrl-C
}


@pytest.mark.parametrize("case", list(CASES))
async def test_signal_stops_cleanly_with_a_bye_to_every_far_end(case: str, tmp_path: Path) -> None:
    sig, group = CASES[case]
    sets = overrides(tmp_path)
    async with sipp_uas("answer") as uas, sipp_uas("answer") as spk, BaresipPhone(user="desk") as phone, \
            running(sets, tmp_path) as gw:
        await gw.start()
        caller = Sipp(UAC_AWAIT_BYE, remote=f"127.0.0.1:{sets['sip.port']}", service="gateway", timeout_s=60)
        try:
            async with console(gw) as (client, w):
                ids, bid = await live_calls(client, w, caller, uas, spk, phone)
                kids = children(gw, 1)
                assert len(kids["workers"]) == 2 and len(kids["front"]) == 1, kids
                t0 = time.monotonic()
                (os.killpg if group else os.kill)(gw.proc.pid, sig)
                async with asyncio.timeout(STOP_WITHIN_S + 5):
                    rc = await gw.proc.wait()
                took = time.monotonic() - t0
                print(f"{case}: exited {rc} {took:.2f}s after the signal")
            # Every far end got its BYE: the callers and the paged speaker end their scenario
            # successfully, the phone logs the call closed by its peer.
            results = {n: await p.wait(10) for n, p in (("inbound", caller), ("outbound", uas), ("paged", spk))}
            await phone.wait_log("session closed: Connection reset by peer", timeout=5)  # its BYE
        finally:
            await caller.stop()
    for name, res in results.items():
        assert res.returncode == 0 and res.successful == 1, (name, res.errors, res.messages[-1500:])
        assert "BYE sip:" in res.messages, name
    assert rc == 0, gw.log.read_text()[-3000:]
    assert took < STOP_WITHIN_S, f"stop took {took:.2f}s"
    assert not gw.log_events(1, "sip.worker.died") and not gw.log_events(1, "sip.worker.restarted")
    assert gw.log_events(1, "gateway.stopped")
    assert not [p for p in kids["workers"] + kids["front"] if alive(p)]
    # Records flushed: every call ended with a cause, the broadcast ended.
    calls = store_rows(gw.store_path, "SELECT call_id, state, cause FROM calls")
    assert {c[0] for c in calls} >= set(ids)
    assert all(state == "ended" and cause for _, state, cause in calls), calls
    assert store_rows(gw.store_path, f"SELECT state FROM broadcasts WHERE broadcast_id = '{bid}'") == [("ended",)]


async def test_kill9_leaves_no_child_and_a_restart_takes_the_same_ports(tmp_path: Path) -> None:
    sets = overrides(tmp_path)
    async with sipp_uas("answer", calls=2) as uas, running(sets, tmp_path) as gw:
        await gw.start()
        async with console(gw) as (client, w):
            await dial_connected(client, w, uas.uri)
        kids = children(gw, 1)
        assert len(kids["workers"]) == 2 and len(kids["front"]) == 1, kids
        # A second gateway on the same SIP port refuses to start, naming the key.
        other = GatewayProc({**sets, "control.port": free_tcp_port(), "http.port": free_tcp_port()},
                            tmp_path / "other", new_session=True)
        (tmp_path / "other").mkdir()
        with pytest.raises(AssertionError) as refused:
            await other.start(timeout=30)
        assert f"sip.port: 127.0.0.1:{sets['sip.port']}/udp is already in use" in str(refused.value)
        assert all(alive(p) for p in kids["workers"] + kids["front"])  # the running one untouched
        await gw.kill9()
        async with asyncio.timeout(10):  # every child follows the gateway
            while left := [p for p in kids["workers"] + kids["front"] if alive(p)]:
                await asyncio.sleep(0.05)
        assert not left
        # Same ports, same data dir: it starts, and calls work.
        await gw.start()
        async with console(gw) as (client, w):
            again = await dial_connected(client, w, uas.uri)
            await client.call("call.hangup", call_id=again)
            await w.call_state(again, "ended")
