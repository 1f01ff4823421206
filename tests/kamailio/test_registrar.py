"""The test registrar (tests/peers/kamailio.py): digest-auth REGISTER, then calls to the AOR."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kamailio.sipp_run import HOST, SippUas, run_sipp, successful_calls
from tests.peers.kamailio import kamailio_registrar
from tests.peers.ports import free_udp_port
from tests.peers.process import read_log, require_binary, start_process, stop_process

pytestmark = pytest.mark.peers


async def register(work: Path, reg, user: str, password: str, contact_port: int):
    return await run_sipp(
        "-sf", str(work / "register.xml"), "-s", user, "-au", user, "-ap", password,
        "-key", "contact_port", str(contact_port), "-i", HOST, "-p", "0", "-m", "1",
        "-timeout", "10", "-timeout_error", "-trace_msg", "-message_file",
        str(work / f"register_{user}.log"), f"{reg.host}:{reg.port}", cwd=work,
    )


async def test_register_with_digest_auth_then_call_reaches_phone(work: Path) -> None:
    phone_port = free_udp_port()
    phone = SippUas(work / "uas.xml", phone_port, work, "alice_phone")
    async with kamailio_registrar(users={"alice": "secret", "bob": "hunter2"}) as reg:
        try:
            await phone.start()
            assert await reg.contacts() == {}

            rc, out = await register(work, reg, "alice", "secret", phone_port)
            assert rc == 0, out[-3000:] + "\n".join(reg.log[-30:])
            trace = (work / "register_alice.log").read_text()
            # the registrar challenged first, then accepted the credentials
            assert "SIP/2.0 401" in trace and 'WWW-Authenticate: Digest realm="127.0.0.1"' in trace
            assert "Authorization: Digest" in trace and "SIP/2.0 200" in trace
            contacts = await reg.wait_registered("alice")
            assert contacts == [f"sip:alice@{HOST}:{phone_port}"]

            # a call to the AOR, through the registrar, reaches the registered phone
            rc, out = await run_sipp(
                "-sf", str(work / "uac.xml"), "-s", "alice", "-i", HOST, "-p", "0", "-m", "2",
                "-timeout", "20", "-timeout_error", f"{reg.host}:{reg.port}", cwd=work,
            )
            assert rc == 0, out[-3000:] + "\n".join(reg.log[-30:])
            assert successful_calls(out) == 2
            assert phone.invites() == 2
            assert f"INVITE sip:alice@{HOST}:{phone_port} SIP/2.0" in phone.received()

            # an unregistered AOR is not found
            rc, out = await run_sipp(
                "-sf", str(work / "uac.xml"), "-s", "bob", "-i", HOST, "-p", "0", "-m", "1",
                "-timeout", "10", "-timeout_error", f"{reg.host}:{reg.port}", cwd=work,
            )
            assert rc != 0
            assert phone.invites() == 2
        finally:
            await phone.kill()


async def test_wrong_password_is_not_registered(work: Path) -> None:
    async with kamailio_registrar(users={"alice": "secret"}) as reg:
        rc, out = await register(work, reg, "alice", "wrong", free_udp_port())
        assert rc != 0
        trace = (work / "register_alice.log").read_text()
        assert trace.count("SIP/2.0 401") >= 2  # challenged again after the bad answer
        assert "SIP/2.0 200" not in trace
        assert await reg.contacts() == {}


async def test_baresip_registers_and_auto_answers_a_call_via_the_registrar(work: Path) -> None:
    baresip = require_binary("baresip")
    async with kamailio_registrar(users={"alice": "secret"}) as reg:
        port = free_udp_port()
        conf = work / "baresip"
        conf.mkdir()
        (conf / "config").write_text(
            f"poll_method epoll\nsip_listen {HOST}:{port}\n"
            "audio_player aubridge,x\naudio_source aubridge,x\naudio_alert aubridge,x\n"
            "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aubridge.so\n"
            "module_tmp account.so\n"
        )
        (conf / "accounts").write_text(
            f"<sip:alice@{reg.domain}:{reg.port}>;auth_pass=secret;answermode=auto;regint=300\n"
        )
        log = work / "baresip.out"
        proc = await start_process([baresip, "-f", str(conf), "-v"], log=log)
        try:
            contacts = await reg.wait_registered("alice", timeout=10)
            assert len(contacts) == 1 and contacts[0].endswith(f"@{HOST}:{port}"), contacts
            # baresip answered the 401 challenge; the registrar accepted its credentials
            assert any("REGISTER for alice authenticated" in line for line in reg.log)

            rc, out_text = await run_sipp(
                "-sf", str(work / "uac.xml"), "-s", "alice", "-i", HOST, "-p", "0", "-m", "1",
                "-timeout", "15", "-timeout_error", f"{reg.host}:{reg.port}", cwd=work,
            )
            assert rc == 0, out_text[-3000:] + read_log(log)[-3000:]
            assert successful_calls(out_text) == 1
            text = read_log(log)
            assert "Call established: sip:caller@" in text, text[-3000:]
        finally:
            await stop_process(proc, grace=5)
