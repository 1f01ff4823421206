"""sms.smpp: the sans-I/O helpers alone, then SmppProvider against the SMSC simulator
(tests/peers/smpp_sim: the npm `smpp` library's server side; missing = FAIL)."""

from __future__ import annotations

import asyncio

import pytest

from sms.provider import Inbound, ProviderError, Receipt
from sms.smpp import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    SmppProvider,
    encode_parts,
    parse_receipt,
    submit_error,
)
from tests.peers.smpp_sim import ESME_RINVDSTADR, ESME_RMSGQFUL, ESME_RTHROTTLED, SmppSim

REJECTED = "+8613900000009"
UNDELIV = "+8613900000008"
NO_RECEIPT = "+8613900000007"

# --- sans-I/O ----------------------------------------------------------------------------------


def test_gsm7_single_part():
    [part] = encode_parts("Hello {x}", 7)
    assert part.data_coding == DATA_CODING_GSM7 and part.esm_class == 0
    assert part.payload == b"Hello \x1b(x\x1b)"  # extension chars: ESC + code


def test_ucs2_concatenated_parts_carry_udh():
    body = "你好" * 40  # 80 UCS-2 units: 2 parts of at most 67
    parts = encode_parts(body, 0x2A)
    assert len(parts) == 2
    for seq, part in enumerate(parts, start=1):
        assert part.data_coding == DATA_CODING_UCS2 and part.esm_class == 0x40
        assert part.payload[:6] == bytes([5, 0, 3, 0x2A, 2, seq])
    assert b"".join(p.payload[6:] for p in parts).decode("utf-16-be") == body


def test_submit_errors_classified():
    assert submit_error(ESME_RTHROTTLED).retryable
    assert submit_error(ESME_RMSGQFUL).retryable
    err = submit_error(ESME_RINVDSTADR)
    assert not err.retryable and err.details["status_name"] == "ESME_RINVDSTADR"


def test_parse_receipt():
    f = parse_receipt("id:abc sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 "
                      "stat:DELIVRD err:000 text:hello world")
    assert (f["id"], f["stat"], f["err"], f["text"], f["done date"]) == (
        "abc", "DELIVRD", "000", "hello world", "2601011201")


# --- against the simulator ---------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.inbound: list[Inbound] = []
        self.changed = asyncio.Event()

    def on_receipt(self, r: Receipt) -> None:
        self.receipts.append(r)
        self.changed.set()

    def on_inbound(self, m: Inbound) -> None:
        self.inbound.append(m)
        self.changed.set()

    async def until(self, pred, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def sim():
    s = SmppSim(reject={REJECTED[1:]: ESME_RINVDSTADR}, stat={UNDELIV[1:]: "UNDELIV"})  # wire: no "+"
    await s.start()
    yield s
    await s.stop()


def provider_for(sim: SmppSim, **kw) -> SmppProvider:
    return SmppProvider("127.0.0.1", sim.port, "gw", kw.pop("password", "secret"), system_type="test",
                        source_addr="10690000", reconnect_s=kw.pop("reconnect_s", 0.2), **kw)


@pytest.fixture
async def bound(sim):
    sink = Sink()
    p = provider_for(sim, enquire_link_s=0.5)
    await p.start(sink.on_receipt, sink.on_inbound)
    yield p, sink
    await p.stop()


async def test_bind_ok_and_wrong_password(sim):
    p = provider_for(sim, password="wrong")
    with pytest.raises(ProviderError) as info:
        await p.start(lambda r: None, lambda m: None)
    assert not info.value.retryable and info.value.details["status_name"] == "ESME_RINVPASWD"
    good = provider_for(sim)
    await good.start(lambda r: None, lambda m: None)
    try:
        assert good.bound
        # the simulator's log is read from its stdout: it may come after the bind_transceiver_resp
        binds = await sim.wait_for("bind_transceiver", count=2)
        assert [b["ok"] for b in binds] == [False, True]
        assert binds[1]["system_id"] == "gw" and binds[1]["system_type"] == "test"
    finally:
        await good.stop()
    await sim.wait_for("unbind")


async def test_submit_gsm7_and_receipt(bound, sim):
    p, sink = bound
    sub = await p.send("m1", "+15005550006", "+8613800000001", "Hello from the gateway")
    [pdu] = await sim.wait_for("submit_sm")
    assert pdu["data_coding"] == 0 and pdu["esm_class"] == 0 and pdu["registered_delivery"] == 1
    assert bytes.fromhex(pdu["short_message_hex"]) == b"Hello from the gateway"
    assert pdu["destination_addr"] == "8613800000001" and pdu["source_addr"] == "10690000"
    assert sub.provider_id == pdu["message_id"] and sub.status == "sent"
    await sink.until(lambda: sink.receipts)
    assert sink.receipts == [Receipt(sub.provider_id, "delivered", None, message_id="m1", to="+8613800000001")]
    assert not p._tracked and not p._parts  # final: forgotten
    assert await p.find_sent("+8613800000001", "2026-01-01T00:00:00Z") == []
    assert p.webhook_routes() == []


async def test_submit_chinese_ucs2(bound, sim):
    p, sink = bound
    sub = await p.send("m2", "+15005550006", "+8613800000001", "你好，收到请回复")
    [pdu] = await sim.wait_for("submit_sm")
    assert pdu["data_coding"] == 8 and pdu["esm_class"] == 0
    assert bytes.fromhex(pdu["short_message_hex"]) == "你好，收到请回复".encode("utf-16-be")
    await sink.until(lambda: sink.receipts)
    assert sink.receipts[0].provider_id == sub.provider_id and sink.receipts[0].status == "delivered"


async def test_two_part_concatenated_and_receipts_of_all_parts(bound, sim):
    p, sink = bound
    body = "测试" * 40  # 80 UCS-2 units -> 2 parts
    sub = await p.send("m3", "+15005550006", "+8613800000001", body)
    pdus = await sim.wait_for("submit_sm", count=2)
    assert all(x["esm_class"] & 0x40 and x["data_coding"] == 8 for x in pdus)
    # the simulator's UDH parse: one IE each, 00 (8-bit ref concatenation) 03 ref total seq
    ies = [bytes.fromhex(x["udh_hex"][0]) for x in pdus]
    assert [ie[:2] for ie in ies] == [b"\x00\x03"] * 2
    assert ies[0][2] == ies[1][2]  # the same reference
    assert [(ie[3], ie[4]) for ie in ies] == [(2, 1), (2, 2)]
    assert all(bytes.fromhex(x["short_message_hex"])[:1] == b"\x05" for x in pdus)  # UDHL
    texts = [bytes.fromhex(x["short_message_hex"])[6:].decode("utf-16-be") for x in pdus]
    assert "".join(texts) == body
    assert sub.provider_id == pdus[0]["message_id"]
    await sim.wait_for("receipt", count=2)
    await sink.until(lambda: len(sink.receipts) == 2)
    # each part's receipt is reported (the gateway stores it before it is acknowledged); the
    # message's outcome once: `sent` for the first part in, `delivered` when both are
    assert sorted(r.provider_id for r in sink.receipts) == sorted(x["message_id"] for x in pdus)
    assert [(r.message_id, r.status) for r in sink.receipts] == [("m3", "sent"), ("m3", "delivered")]
    assert not p._tracked and not p._parts


async def test_undelivered_receipt(bound, sim):
    p, sink = bound
    sub = await p.send("m4", "+15005550006", UNDELIV, "Hi")
    await sink.until(lambda: sink.receipts)
    assert sink.receipts == [Receipt(sub.provider_id, "undelivered", "001", message_id="m4", to=UNDELIV)]


async def test_rejected_destination_is_permanent(bound, sim):
    p, _ = bound
    with pytest.raises(ProviderError) as info:
        await p.send("m5", "+15005550006", REJECTED, "Hi")
    assert not info.value.retryable
    assert info.value.details["command_status"] == ESME_RINVDSTADR
    [pdu] = await sim.wait_for("submit_sm")
    assert pdu["status"] == ESME_RINVDSTADR


async def test_inbound_ucs2(bound, sim):
    _, sink = bound
    await sim.send_mo("8613800000001", "10690000", "收到")
    await sink.until(lambda: sink.inbound)
    [m] = sink.inbound
    assert (m.body, m.sender, m.to) == ("收到", "8613800000001", "10690000")
    [resp] = await sim.wait_for("mo_resp")
    assert resp["status"] == 0


async def test_enquire_link_sent(bound, sim):
    await sim.wait_for("enquire_link", timeout=5.0)


async def test_reconnect_after_smsc_crash(bound, sim):
    p, sink = bound
    await p.send("m6", "+15005550006", "+8613800000001", "before")
    await sim.kill()
    async with asyncio.timeout(5):
        while p.bound:
            await asyncio.sleep(0.05)
    with pytest.raises(ProviderError) as info:
        await p.send("m7", "+15005550006", "+8613800000001", "while down")
    assert info.value.retryable
    await sim.start()
    async with asyncio.timeout(10):
        while not p.bound:
            await asyncio.sleep(0.05)
    sub = await p.send("m8", "+15005550006", "+8613800000001", "after")
    assert sub.provider_id
    await sink.until(lambda: any(r.provider_id == sub.provider_id for r in sink.receipts))
    assert [b["ok"] for b in sim.of("bind_transceiver")] == [True, True]


async def test_a_deliver_sm_not_taken_is_answered_throttled_and_comes_again(sim):
    """The gateway could not store it (overloaded, store down): ESME_RTHROTTLED, and the SMSC
    delivers it again; ESME_ROK only once it was taken."""
    taken: list[Inbound] = []
    refusals = 2

    async def on_inbound(m: Inbound) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise RuntimeError("cannot store now")
        taken.append(m)

    p = provider_for(sim)
    await p.start(lambda r: None, on_inbound)
    try:
        await sim.send_mo("8613800000001", "10690000", "求助：桥下积水")
        resps = await sim.wait_for("mo_resp", count=3, timeout=10)
        assert [r["status"] for r in resps] == [ESME_RTHROTTLED, ESME_RTHROTTLED, 0]
        assert [m.body for m in taken] == ["求助：桥下积水"]
        assert taken[0].dedup_key  # a redelivery carries the same key, whatever its sequence number
    finally:
        await p.stop()


async def test_deliver_sm_are_read_on_while_the_earlier_ones_are_stored(sim):
    """The receive loop does not wait for the store: the SMSC's outstanding receipts all reach the
    gateway (and can be stored in one batch), each answered ESME_ROK only once its store returned.
    Before, the loop awaited each store before reading the next deliver_sm: one at a time."""
    stored = asyncio.Event()
    handed: list[Receipt] = []

    async def on_receipt(r: Receipt) -> None:
        handed.append(r)
        await stored.wait()

    p = provider_for(sim)
    await p.start(on_receipt, lambda m: None)
    try:
        for i in range(5):
            await p.send(f"m{i}", "+15005550006", f"+86139000001{i:02d}", "hi")
        async with asyncio.timeout(10):
            while len(handed) < 5:
                await asyncio.sleep(0.01)
        assert sim.of("receipt_resp") == []  # none answered before it is stored
        stored.set()
        answers = await sim.wait_for("receipt_resp", count=5, timeout=10)
        assert [a["status"] for a in answers] == [0] * 5
        assert sorted(r.message_id for r in handed) == [f"m{i}" for i in range(5)]
    finally:
        await p.stop()


async def test_the_part_map_forgets_a_message_with_no_receipt_after_its_ttl():
    sim = SmppSim(no_receipt=[NO_RECEIPT[1:]])
    await sim.start()
    p = provider_for(sim, part_ttl_s=1.5)
    await p.start(lambda r: None, lambda m: None)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.5
        await p.send("m-a", "+15005550006", NO_RECEIPT, "no receipt will come")
        assert set(p._tracked) == {"m-a"} and len(p._parts) == 1
        await p.send("m-b", "+15005550006", NO_RECEIPT, "still within the TTL")
        assert set(p._tracked) == {"m-a", "m-b"}
        await asyncio.sleep(max(0.0, deadline - loop.time()) + 0.05)  # the TTL passes
        await p.send("m-c", "+15005550006", NO_RECEIPT, "after the TTL")
        assert set(p._tracked) == {"m-c"} and len(p._parts) == 1
    finally:
        await p.stop()
        await sim.stop()


async def test_inbound_concatenated_and_latin1(bound, sim):
    """A concatenated MO is reassembled from its parts (each answered as it comes: docs/design.md);
    a Latin-1 one (data_coding 3) is read as such."""
    _, sink = bound
    await sim.send_mo("8613800000002", "10690000", "", parts=["Bridge flooded, ", "two cars ", "stuck"], ref=9)
    await sim.send_mo("8613800000003", "10690000", "Café fermé", coding="latin1")
    await sink.until(lambda: len(sink.inbound) == 2)
    assert sorted(m.body for m in sink.inbound) == ["Bridge flooded, two cars stuck", "Café fermé"]
    resps = await sim.wait_for("mo_resp", count=4)
    assert [r["status"] for r in resps] == [0] * 4
