"""Registration with digest auth to Kamailio as a registrar, and a call to a phone registered there."""

from __future__ import annotations

import pytest

from tests.peers.baresip import BaresipPhone
from tests.peers.kamailio import kamailio_registrar

pytestmark = pytest.mark.peers


class RegisteredPhone(BaresipPhone):
    """A baresip phone that registers `user` with `password` at a registrar (digest auth)."""

    def __init__(self, *, aor: str, password: str, **kw) -> None:
        super().__init__(**kw)
        self.aor, self.password = aor, password

    def _write_config(self) -> None:
        super()._write_config()
        (self.dir / "accounts").write_text(
            f"<{self.aor}>;auth_pass={self.password};regint=300;answermode=auto\n")


async def test_gateway_registers_and_calls_a_phone_registered_there(start_gateway, connect, watch) -> None:
    async with kamailio_registrar(users={"gateway": "gw-secret", "duty7": "phone-secret"}) as reg:
        gw = await start_gateway(**{
            "sip.registration.registrar": f"sip:{reg.host}:{reg.port}",
            "sip.registration.username": "gateway",
            "sip.registration.password": "gw-secret",
        })
        (gw_contact,) = await reg.wait_registered("gateway", timeout=10)
        assert gw_contact.endswith(f":{gw.config.sip.port}") or f":{gw.config.sip.port};" in gw_contact
        assert any("REGISTER for gateway authenticated" in line for line in reg.log)
        async with RegisteredPhone(aor=reg.aor("duty7"), password="phone-secret", user="duty7") as phone:
            await reg.wait_registered("duty7", timeout=10)
            alice = await connect(gw)
            w = await watch(alice)
            call = await alice.call("call.dial", target=reg.aor("duty7"))
            await w.call_state(call["call_id"], "connected")
            await phone.wait_log("Call established")
            await alice.call("call.hangup", call_id=call["call_id"])
            ended = await w.call_state(call["call_id"], "ended")
            log = phone.log()
    assert ended["cause"] == "local-hangup"
    assert f"answering call on line 1 from sip:gateway@{reg.host}" in log


async def test_wrong_password_is_not_registered(start_gateway) -> None:
    async with kamailio_registrar(users={"gateway": "gw-secret"}) as reg:
        await start_gateway(**{
            "sip.registration.registrar": f"sip:{reg.host}:{reg.port}",
            "sip.registration.username": "gateway",
            "sip.registration.password": "not-the-password",
        })
        with pytest.raises(TimeoutError):
            await reg.wait_registered("gateway", timeout=3)
