"""Registration outcomes reach dispatchers: worker -> SipEvent(kind="registration") -> the call
service publishes `sip.registration`. Against a real Kamailio registrar (digest auth)."""

from __future__ import annotations

import pytest

from gateway.events import EventBus
from gateway.services.calls import CallService
from gateway.services.sessions import SessionService
from gateway.store import Store
from sip import SipEvent
from tests.peers.kamailio import kamailio_registrar

from .conftest import Recorder

pytestmark = pytest.mark.peers


def is_registration(ev: SipEvent) -> bool:
    return ev.kind == "registration" and ev.call_id == ""


async def published(events: list[SipEvent]) -> list[dict]:
    """Feed SipEvents through the call service; the `sip.registration` events it publishes."""
    store = Store(":memory:")
    await store.open()
    try:
        bus = EventBus(store)
        calls = CallService(store, bus, SessionService(store, bus), None,  # type: ignore[arg-type]
                            ring_timeout_s=30, dial_timeout_s=30)
        for ev in events:
            await calls._on_event(ev)
        stored = await store.events_after(0)
    finally:
        await store.close()
    assert all(e.session_id is None for e in stored)
    return [e.data for e in stored if e.type == "sip.registration"]


@pytest.mark.parametrize(("password", "ok"), [("gw-secret", True), ("not-the-password", False)])
async def test_registration_outcome_is_an_event(start_supervisor, recorder: Recorder, password: str,
                                                ok: bool) -> None:
    async with kamailio_registrar(users={"gateway": "gw-secret"}) as reg:
        registrar = f"sip:{reg.host}:{reg.port}"
        await start_supervisor(proxy="none", max_workers=1, registration={
            "registrar": registrar, "username": "gateway", "password": password, "expires": 60})
        ev = await recorder.wait_for(is_registration, timeout=10)
    assert ev.extra["registrar"] == registrar and ev.worker == 0
    if ok:
        assert (ev.sip_code, ev.extra["expires"] > 0) == (200, True)
    else:
        assert ev.sip_code in (401, 403) and ev.reason
    (data,) = await published([ev])
    assert data == {"registrar": registrar, "sip_code": ev.sip_code, "reason": ev.reason,
                    "registered": ok}


async def test_registrar_password_is_not_on_the_worker_command_line(start_supervisor,
                                                                    recorder: Recorder) -> None:
    """The worker gets its config through its stdin pipe, not argv (visible to every user in ps)."""
    password = "gw-secret-not-in-argv"
    async with kamailio_registrar(users={"gateway": password}) as reg:
        sup = await start_supervisor(proxy="none", max_workers=1, registration={
            "registrar": f"sip:{reg.host}:{reg.port}", "username": "gateway", "password": password,
            "expires": 60})
        ev = await recorder.wait_for(is_registration, timeout=10)
        assert ev.sip_code == 200  # digest auth with the password still works
        (worker,) = [w for w in sup._workers.values() if w.proc is not None]
        with open(f"/proc/{worker.proc.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        worker_log = worker.log_path.read_bytes()
    assert password.encode() not in worker_log  # nor in the worker's own log
    assert b"sip.worker" in cmdline
    assert password.encode() not in cmdline and b"--config-json" not in cmdline
