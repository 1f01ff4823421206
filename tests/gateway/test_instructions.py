"""Instructions to field terminals against the real gateway: acknowledged over the control channel;
an offline terminal, or one online but silent past the ack timeout, texted through the SMS outbox
(Prism + the stateful Twilio stub); instructions queued for an offline terminal delivered once each,
in order, when it comes back — after a reconnect and after a gateway restart (its own process,
stopped with SIGTERM and killed with -9)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.client import GatewayClient, RemoteError
from gateway.store.terminals import deliveries
from gateway.timeutil import iso_to_epoch
from tests.gateway.gateway_proc import GatewayProc
from tests.gateway.test_sms_twilio import twilio_gateway
from tests.gateway.test_stop_signals import overrides
from tests.gateway.test_terminals import TERMINALS

pytestmark = pytest.mark.peers

UNIT7, UNIT9 = "+8613800138007", "+8613800138009"


def step(w: Any, iid: str, tid: str, name: str, timeout: float = 20):
    return w.wait(lambda e: e["type"] == "terminal.instruction" and e["data"]["instruction_id"] == iid
                  and e["data"]["terminal_id"] == tid and e["data"]["step"] == name, timeout)


async def first(client: GatewayClient, timeout: float = 20) -> dict:
    async with asyncio.timeout(timeout):
        async for ins in client.instructions():
            return ins
    raise AssertionError("instructions ended")


async def take(client: GatewayClient, n: int, timeout: float = 30) -> list[dict]:
    got: list[dict] = []
    async with asyncio.timeout(timeout):
        async for ins in client.instructions():
            got.append(ins)
            if len(got) == n:
                return got
    raise AssertionError(f"instructions ended after {len(got)}")


async def test_instruction_delivered_and_acknowledged(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"directory.endpoint": TERMINALS})
    alice = await connect(gw)
    w = await watch(alice)
    unit = await connect(gw, "tok-terminal")
    incident = await alice.call("session.create", title="Flood, district 3")
    sent = await alice.call("terminal.instruct", targets=["unit-7"], text="Evacuate the east bank",
                            session_id=incident["session_id"], ack_timeout_s=30)
    iid = sent["instruction_id"]
    assert sent["terminals"] == [{"terminal_id": "unit-7", "state": "queued"}]
    ins = await first(unit)
    assert (ins["instruction_id"], ins["text"], ins["require_ack"]) == (iid, "Evacuate the east bank", True)
    delivered = await step(w, iid, "unit-7", "delivered")  # the client confirmed it holds it
    assert delivered["data"]["state"] == "delivered" and delivered["session_id"] == incident["session_id"]
    assert (await unit.ack(iid))["state"] == "acknowledged"
    acked = await step(w, iid, "unit-7", "acknowledged")
    picture = await alice.call("terminal.instruction.get", instruction_id=iid)
    [mine] = picture["terminals"]
    assert mine["state"] == "acknowledged" and mine["sms_message_id"] is None and mine["acknowledged_at"]
    assert picture["text"] == "Evacuate the east bank" and picture["created_by"] == "alice"
    assert (await unit.ack(iid))["state"] == "acknowledged"  # a repeat changes nothing
    assert [e["data"]["step"] for e in w.events if e["type"] == "terminal.instruction"] == [
        "queued", "delivered", "acknowledged"]
    assert acked["seq"] == max(e["seq"] for e in w.events if e["type"] == "terminal.instruction")
    roster = {t["terminal_id"]: t for t in await alice.terminals()}
    assert roster["unit-7"]["session_id"] == incident["session_id"]  # its current incident

    async def refused(client: GatewayClient, method: str, **params: Any) -> str:
        with pytest.raises(RemoteError) as info:
            await client.call(method, **params)
        return info.value.reason

    assert await refused(unit, "terminal.instruct", targets=["unit-7"], text="x") == "forbidden"
    assert await refused(unit, "terminal.ack", instruction_id=iid, terminal_id="unit-9") == "forbidden"
    assert await refused(unit, "terminal.instruction.get", instruction_id=iid) == "forbidden"
    assert await refused(unit, "terminal.ack", instruction_id="nope") == "no-such-instruction"
    assert await refused(alice, "terminal.instruct", targets=["desk-1"], text="x") == "no-such-terminal"
    assert await refused(alice, "terminal.instruct", targets=["unit-7"], text="  ") == "invalid-params"


async def test_offline_terminals_are_texted_and_a_later_ack_counts(start_gateway, connect, watch, tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path, **{"directory.endpoint": TERMINALS}) as (gw, stub, prism, _):
        alice = await connect(gw)
        w = await watch(alice)
        sent = await alice.call("terminal.instruct", targets=["group:d3"], text="所有人到防汛指挥部报到")
        iid = sent["instruction_id"]
        assert [t["terminal_id"] for t in sent["terminals"]] == ["unit-7", "unit-9"]  # desk-1: no terminal
        for tid in ("unit-7", "unit-9"):
            ev = await step(w, iid, tid, "fallback-sms")
            assert ev["data"]["sms_message_id"]
        await w.wait(lambda e: sum(1 for x in w.events if x["type"] == "sms.status"
                                   and x["data"]["state"] == "delivered") == 2)
        assert sorted(m["to"] for m in stub.messages.values()) == [UNIT7, UNIT9]
        assert {m["body"] for m in stub.messages.values()} == {"所有人到防汛指挥部报到"}
        assert sum(stub.creates.values()) == 2  # one SMS each
        linked = [e["data"]["ref"] for e in w.events if e["type"] == "sms.status"]
        # One incident holds it all: a session of its own (none was given), its SMS too.
        assert sent["session_id"] and {e["session_id"] for e in w.events if e["type"] in (
            "sms.status", "terminal.instruction")} == {sent["session_id"]}
        assert {r["terminal_id"] for r in linked} == {"unit-7", "unit-9"}
        assert {r["instruction_id"] for r in linked} == {iid}
        # unit-7 comes back: it still gets the instruction, and its ack still counts.
        unit = await connect(gw, "tok-terminal")
        assert (await first(unit))["instruction_id"] == iid
        await step(w, iid, "unit-7", "delivered")
        await unit.ack(iid)
        await step(w, iid, "unit-7", "acknowledged")
        picture = {t["terminal_id"]: t for t in
                   (await alice.call("terminal.instruction.get", instruction_id=iid))["terminals"]}
        assert picture["unit-7"]["state"] == "acknowledged" and picture["unit-7"]["sms"]["state"] == "delivered"
        assert picture["unit-9"]["state"] == "fallback-sms" and picture["unit-9"]["delivered_at"] is None
        assert sum(stub.creates.values()) == 2
        await asyncio.sleep(0.3)
        assert prism.violations() == [], prism.violations()


async def test_online_but_silent_terminal_is_texted_after_the_timeout(start_gateway, connect, watch,
                                                                      tmp_path) -> None:
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False,
                              **{"directory.endpoint": TERMINALS}) as (gw, stub, _, _):
        alice = await connect(gw)
        w = await watch(alice)
        unit = await connect(gw, "tok-terminal")
        await w.wait(lambda e: e["type"] == "terminal.presence" and e["data"]["state"] == "online")
        t0 = time.time()  # wall clock, like the deadline and the events' times
        sent = await alice.call("terminal.instruct", targets=["unit-7"], text="Report your position",
                                ack_timeout_s=1.5)
        iid = sent["instruction_id"]
        await first(unit)  # it has it (delivered) but never acknowledges
        delivered = await step(w, iid, "unit-7", "delivered")
        fallback = await step(w, iid, "unit-7", "fallback-sms")
        waited = iso_to_epoch(fallback["time"]) - t0  # its time is stamped once it is decided
        assert 1.5 - 0.002 <= waited < 15, waited  # (event times are cut to the millisecond)
        assert delivered["seq"] < fallback["seq"]
        await w.wait(lambda e: e["type"] == "sms.status" and e["data"]["state"] == "delivered"
                     and e["data"]["ref"]["instruction_id"] == iid)
        assert [m["to"] for m in stub.messages.values()] == [UNIT7]
        # Delivered and no ack required: nothing texted after the timeout.
        quiet = await alice.call("terminal.instruct", targets=["unit-7"], text="FYI", require_ack=False,
                                 ack_timeout_s=0.5)
        await step(w, quiet["instruction_id"], "unit-7", "delivered")
        [row] = await deliveries(gw.store, "instruction_id = ?", (quiet["instruction_id"],))
        assert row["deadline"] is None  # delivered was enough: no SMS will follow
        picture = await alice.call("terminal.instruction.get", instruction_id=quiet["instruction_id"])
        assert picture["terminals"][0]["state"] == "delivered" and len(stub.messages) == 1


async def test_fallback_without_a_phone_or_a_provider_is_on_record(start_gateway, connect, watch) -> None:
    eps = '[{name = "unit-7", kind = "terminal", phone = "+8613800138007"}, {name = "unit-5", kind = "terminal"}]'
    gw = await start_gateway(**{"directory.endpoint": eps})  # sms.provider: none
    alice = await connect(gw)
    w = await watch(alice)
    iid = (await alice.call("terminal.instruct", targets=["unit-7", "unit-5"], text="x"))["instruction_id"]
    no_phone = await step(w, iid, "unit-5", "fallback-sms")
    assert no_phone["data"]["error"] == "no-phone" and no_phone["data"]["sms_message_id"] is None
    failed = await step(w, iid, "unit-7", "sms-failed")
    assert failed["data"]["error"] == "sms-unavailable" and failed["data"]["state"] == "fallback-sms"
    picture = {t["terminal_id"]: t for t in
               (await alice.call("terminal.instruction.get", instruction_id=iid))["terminals"]}
    assert picture["unit-7"]["error"] == "sms-unavailable" and picture["unit-5"]["error"] == "no-phone"


async def test_fallback_sms_queued_once_when_the_gateway_stopped_between_the_steps(
        start_gateway, connect, tmp_path) -> None:
    # First run: the service's timer is cancelled the moment the fallback-sms step is committed,
    # before the SMS is queued: a gateway stopped between the two steps.
    gw = await start_gateway(**{"directory.endpoint": TERMINALS})
    alice = await connect(gw)
    timer = next(t for t in gw.instructions._tasks if t.get_name() == "instructions.timer")

    def on_stored(events: Any) -> None:
        if any(e.type == "terminal.instruction" and e.data["step"] == "fallback-sms" for e in events):
            timer.cancel()

    gw.store.add_listener(on_stored)
    iid = (await alice.call("terminal.instruct", targets=["unit-7"], text="Check the pumps"))["instruction_id"]
    async with asyncio.timeout(20):
        while not timer.done():
            await asyncio.sleep(0.02)
    [row] = (await alice.call("terminal.instruction.get", instruction_id=iid))["terminals"]
    assert row["state"] == "fallback-sms" and row["sms"]["state"] is None  # no SMS stored yet
    await alice.close()
    await gw.stop()
    # The next run finds it and queues the SMS, under the id the row holds: once.
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False,
                              **{"directory.endpoint": TERMINALS}) as (gw2, stub, _, _):
        alice = await connect(gw2)
        async with asyncio.timeout(20):
            while (await alice.call("terminal.instruction.get", instruction_id=iid)
                   )["terminals"][0]["sms"]["state"] != "delivered":
                await asyncio.sleep(0.05)
        assert [m["to"] for m in stub.messages.values()] == [UNIT7]
        again = await gw2.sms.send(principal="alice", to=[UNIT7], body="Check the pumps", template=None,
                                   variables=None, session_id=None, sender=None,
                                   message_id=row["sms_message_id"])
        assert again.get("existing") and sum(stub.creates.values()) == 1


async def test_queued_instructions_delivered_once_in_order_after_reconnect(start_gateway, connect,
                                                                           watch) -> None:
    gw = await start_gateway(**{"directory.endpoint": TERMINALS, "terminals.redeliver_s": 3})
    alice = await connect(gw)
    w = await watch(alice)
    ids = [(await alice.call("terminal.instruct", targets=["unit-7"], text=f"step {i}",
                             fallback="none"))["instruction_id"] for i in range(3)]
    # A client that loses its link before confirming: what it got is pushed again later.
    lossy = await connect(gw, "tok-terminal", reconnect=False)
    lossy.confirm_instructions = False
    assert [i["instruction_id"] for i in await take(lossy, 3)] == ids
    async with asyncio.timeout(20):  # unconfirmed: pushed again after terminals.redeliver_s
        while min(lossy.instruction_pushes[i] for i in ids) < 2:
            await asyncio.sleep(0.05)
    assert [i["instruction_id"] for i in lossy.instructions_seen.values()] == ids  # seen once each
    await lossy.close()
    await w.wait(lambda e: e["type"] == "terminal.presence" and e["data"]["state"] == "offline")
    unit = await connect(gw, "tok-terminal")
    assert [i["instruction_id"] for i in await take(unit, 3)] == ids
    for iid in ids:
        await step(w, iid, "unit-7", "delivered")
    assert dict(unit.instruction_pushes) == {i: 1 for i in ids}  # confirmed at once: pushed once
    ids.append((await alice.call("terminal.instruct", targets=["unit-7"], text="step 3",
                                 fallback="none"))["instruction_id"])
    assert (await first(unit))["instruction_id"] == ids[-1]
    await step(w, ids[-1], "unit-7", "delivered")
    assert dict(unit.instruction_pushes) == {i: 1 for i in ids}


async def test_queued_instructions_survive_gateway_restarts(tmp_path: Path) -> None:
    sets = overrides(tmp_path, **{"directory.endpoint": TERMINALS, "sip.max_workers": 1,
                                  "sip.warm_workers": 1, "sip.proxy": "none"})
    gw = GatewayProc(sets, tmp_path)
    try:
        await gw.start()
        async with await GatewayClient.connect(gw.url, "tok-dispatcher") as alice:
            incident = (await alice.call("session.create", title="Flood"))["session_id"]
            ids = [(await alice.call("terminal.instruct", targets=["unit-7"], text=f"step {i}",
                                     fallback="none", session_id=incident))["instruction_id"] for i in range(2)]
        await gw.stop()  # SIGTERM
        await gw.start()
        async with await GatewayClient.connect(gw.url, "tok-dispatcher") as alice:
            ids.append((await alice.call("terminal.instruct", targets=["unit-7"], text="step 2",
                                         fallback="none", session_id=incident))["instruction_id"])
        await gw.kill9()
        await gw.start()
        async with await GatewayClient.connect(gw.url, "tok-terminal") as unit:
            got = await take(unit, 3)
            assert [i["instruction_id"] for i in got] == ids
            assert [i["text"] for i in got] == ["step 0", "step 1", "step 2"]
            async with await GatewayClient.connect(gw.url, "tok-dispatcher") as alice:
                for iid in ids:
                    async with asyncio.timeout(20):
                        while (await alice.call("terminal.instruction.get", instruction_id=iid)
                               )["terminals"][0]["state"] != "delivered":
                            await asyncio.sleep(0.05)
                [entry] = [t for t in await alice.terminals() if t["terminal_id"] == "unit-7"]
                assert entry["session_id"] == incident  # its current incident, read back at start
            assert dict(unit.instruction_pushes) == {i: 1 for i in ids}
    finally:
        await gw.stop()


async def test_a_reinstalled_app_gets_its_open_instructions_back(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"directory.endpoint": TERMINALS})
    alice = await connect(gw)
    w = await watch(alice)
    ids = [(await alice.call("terminal.instruct", targets=["unit-7"], text=f"step {i}",
                             fallback="none"))["instruction_id"] for i in range(4)]
    other = (await alice.call("terminal.instruct", targets=["unit-9"], text="not yours",
                              fallback="none"))["instruction_id"]
    unit = await connect(gw, "tok-terminal")
    assert [i["instruction_id"] for i in await take(unit, 4)] == ids
    for iid in ids:
        await step(w, iid, "unit-7", "delivered")
    await unit.ack(ids[1])
    await unit.close()
    # The app is reinstalled: delivered instructions are not pushed again, it asks for them.
    fresh = await connect(gw, "tok-terminal")
    open_ = await fresh.open_instructions()
    assert [i["instruction_id"] for i in open_] == [ids[0], ids[2], ids[3]]  # in the order given
    assert open_[0]["text"] == "step 0" and open_[0]["state"] == "delivered" and open_[0]["require_ack"]
    page = await fresh.call("terminal.instructions", limit=2)
    assert [i["instruction_id"] for i in page["instructions"]] == [ids[0], ids[2]]
    assert page["next_after"] == ids[2] and page["terminal_id"] == "unit-7"
    rest = await fresh.call("terminal.instructions", limit=2, after=page["next_after"])
    assert [i["instruction_id"] for i in rest["instructions"]] == [ids[3]] and rest["next_after"] is None
    acked = await fresh.call("terminal.instructions", state="acknowledged")
    assert [i["instruction_id"] for i in acked["instructions"]] == [ids[1]]
    assert len((await fresh.call("terminal.instructions", state="all"))["instructions"]) == 4
    assert other not in {i["instruction_id"] for i in await fresh.open_instructions("all")}
    with pytest.raises(RemoteError) as info:  # a terminal reads only its own
        await fresh.call("terminal.instructions", terminal_id="unit-9")
    assert info.value.reason == "forbidden"
    with pytest.raises(RemoteError) as info:
        await alice.call("terminal.instructions")  # a dispatcher has terminal.instruction.get
    assert info.value.reason == "forbidden"
