"""sms.smpp_session: the ESME's session on real sockets. Against the SMSC simulator where it can
show it (coalesced writes); against a scripted SMSC on a local socket for what the simulator never
does (a bind refused with a header only, a stream that is not SMPP, an enquire_link left
unanswered, an enquire_link from the SMSC)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import pytest

from sms.provider import ProviderError
from sms.smpp import SmppProvider
from sms.smpp_pdu import (
    BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    SUBMIT_SM,
    Decoder,
    Pdu,
    ShortMessage,
    bind_transceiver_resp,
    encode_sm,
    pdu,
)
from sms.smpp_session import Esme
from tests.peers.smpp_sim import SmppSim


class Scripted:
    """A scripted SMSC on 127.0.0.1: `script(reader PDUs, writer)` runs per connection."""

    def __init__(self, script: Callable[[Callable[[], Awaitable[Pdu]], asyncio.StreamWriter], Awaitable[None]]):
        self.script = script
        self.server: asyncio.Server | None = None
        self.seen: list[Pdu] = []

    async def __aenter__(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder, queued = Decoder(), []

            async def next_pdu() -> Pdu:
                while not queued:
                    data = await reader.read(4096)
                    if not data:
                        raise ConnectionError("the ESME closed")
                    queued.extend(decoder.feed(data))
                p = queued.pop(0)
                self.seen.append(p)
                return p

            try:
                await self.script(next_pdu, writer)
            except ConnectionError:
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def bind_ok(next_pdu: Callable[[], Awaitable[Pdu]], writer: asyncio.StreamWriter) -> None:
    bind = await next_pdu()
    assert bind.command_id == BIND_TRANSCEIVER
    writer.write(bind_transceiver_resp(bind.sequence, "SCRIPTED"))


def esme(port: int, **kw) -> Esme:
    return Esme("127.0.0.1", port, "gw", "secret", "", on_deliver=lambda s, p: None,
                enquire_link_s=kw.get("enquire_link_s", 30.0), reconnect_s=0.1,
                response_timeout_s=kw.get("response_timeout_s", 2.0))


async def test_submits_of_one_loop_iteration_go_out_in_one_write():
    """Every PDU produced in one loop iteration is one transport.write (aiosmpplib: one each)."""
    sim = SmppSim()
    await sim.start()
    p = SmppProvider("127.0.0.1", sim.port, "gw", "secret", reconnect_s=0.2)
    await p.start(lambda r: None, lambda m: None)
    try:
        session = p._esme.session
        writes: list[bytes] = []
        write = session.transport.write

        def counted(data: bytes) -> None:
            writes.append(bytes(data))
            write(data)

        session.transport.write = counted
        n = 10
        subs = await asyncio.gather(*(p.send(f"m{i}", "+15005550006", f"+86138000{i:05d}", "Hi") for i in range(n)))
        assert len({s.provider_id for s in subs}) == n
        submit_writes = [w for w in writes if any(x.command_id == SUBMIT_SM for x in Decoder().feed(w))]
        assert len(submit_writes) == 1, [len(Decoder().feed(w)) for w in writes]
        assert sum(x.command_id == SUBMIT_SM for x in Decoder().feed(submit_writes[0])) == n
        assert len(await sim.wait_for("submit_sm", count=n)) == n
    finally:
        await p.stop()
        await sim.stop()


async def test_a_bind_refused_with_a_header_only_is_the_permanent_401():
    async def refuse(next_pdu, writer):
        bind = await next_pdu()
        writer.write(struct.pack(">IIII", 16, BIND_TRANSCEIVER_RESP, 0x0F, bind.sequence))  # ESME_RINVSYSID
        await writer.drain()

    async with Scripted(refuse) as port:
        p = SmppProvider("127.0.0.1", port, "gw", "secret")
        with pytest.raises(ProviderError) as info:
            await p.start(lambda r: None, lambda m: None)
    assert info.value.status_code == 401 and not info.value.retryable
    assert info.value.details["status_name"] == "ESME_RINVSYSID"
    assert not p.bound


async def test_a_stream_that_is_not_smpp_closes_the_session():
    async def garbage(next_pdu, writer):
        await bind_ok(next_pdu, writer)
        writer.write(struct.pack(">IIII", 8, ENQUIRE_LINK, 0, 1))  # command_length below the header
        await next_pdu()  # until the ESME closes

    async with Scripted(garbage) as port:
        e = esme(port)
        session = await e.connect()
        async with asyncio.timeout(5):
            await session.closed
        assert not session.bound


async def test_the_smscs_enquire_link_is_answered_and_ours_unanswered_closes_the_session():
    answers: list[Pdu] = []

    async def script(next_pdu, writer):
        await bind_ok(next_pdu, writer)
        writer.write(pdu(ENQUIRE_LINK, 41))
        while True:
            p = await next_pdu()  # our enquire_link is never answered
            if p.command_id == ENQUIRE_LINK_RESP:
                answers.append(p)

    s = Scripted(script)
    async with s as port:
        session = await esme(port, enquire_link_s=0.1, response_timeout_s=0.3).connect()
        async with asyncio.timeout(5):
            await session.closed  # no enquire_link_resp within response_timeout_s: the link is dead
    assert [(a.sequence, a.command_status) for a in answers] == [(41, 0)]
    assert any(p.command_id == ENQUIRE_LINK for p in s.seen)


async def test_a_deliver_sm_its_reader_fails_on_is_answered_syserr_and_the_session_goes_on():
    answers: list[Pdu] = []

    async def script(next_pdu, writer):
        await bind_ok(next_pdu, writer)
        writer.write(encode_sm(DELIVER_SM, 5, ShortMessage("8613800000001", "10690000", b"hi")))
        writer.write(pdu(ENQUIRE_LINK, 6))
        while len(answers) < 2:
            answers.append(await next_pdu())
        await next_pdu()  # the unbind: the connection stays up until then

    def broken(session, p):
        raise RuntimeError("a bug")

    async with Scripted(script) as port:
        e = Esme("127.0.0.1", port, "gw", "secret", "", on_deliver=broken, enquire_link_s=30.0,
                 reconnect_s=0.1, response_timeout_s=2.0)
        session = await e.connect()
        async with asyncio.timeout(5):
            while len(answers) < 2:
                await asyncio.sleep(0.01)
        assert [(a.command_id, a.sequence, a.command_status) for a in answers] == [
            (DELIVER_SM_RESP, 5, 0x08), (ENQUIRE_LINK_RESP, 6, 0)]
        assert session.bound
        await e.stop(timeout=0.5)
