"""An inbound INVITE with bytes that are not UTF-8 in a header fails nobody's work (issue 7 s. 6).

SIPp sends the raw bytes (the scenario file is Latin-1, as its XML head says); pjsua2 hands them
over as lone surrogates. The call is announced with the text normalised (U+FFFD), it can be
answered, and calls placed after it reach `connected`."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from tests.peers.sipp import Sipp, UAC_CALL, sipp_uas

pytestmark = pytest.mark.peers

RAW_NAME = "Caf\xe9 \xff\xfe unit"  # Latin-1 bytes E9 FF FE: not UTF-8


def raw_bytes_caller(target: str) -> Sipp:
    xml = UAC_CALL.replace("{hold_ms}", "500").replace("{play}", "")
    xml = xml.replace('From: "sipp" <', f'From: "{RAW_NAME}" <', 1)
    assert RAW_NAME in xml
    sipp = Sipp(xml, remote=target, service="gateway", timeout_s=30)
    sipp.scenario.write_bytes(xml.encode("latin-1"))  # the raw bytes, as a broken phone sends them
    return sipp


async def test_invite_with_non_utf8_header_then_normal_calls(start_gateway, connect, watch) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    cfg = gw.config.sip
    with capture_logs() as logs:
        async with raw_bytes_caller(f"{cfg.host}:{cfg.port}") as uac:
            ringing = await w.call_state(None, "ringing")
            assert "Caf\ufffd" in ringing["remote_uri"] or "Caf\u00e9" in ringing["remote_uri"]
            assert "\ufffd" in ringing["remote_uri"]
            await alice.call("call.answer", call_id=ringing["call_id"])
            await w.call_state(ringing["call_id"], "connected")
            await w.call_state(ringing["call_id"], "ended")
            res = await uac.wait(15)
        assert (res.returncode, res.successful) == (0, 1), res.errors
        async with sipp_uas("answer", calls=2) as uas:
            ids = [(await alice.call("call.dial", target=uas.uri))["call_id"] for _ in range(2)]
            for call_id in ids:
                await w.call_state(call_id, "connected", timeout=20)
                await alice.call("call.hangup", call_id=call_id)
                await w.call_state(call_id, "ended")
    assert not [e for e in logs if e["event"] in ("store.commit_failed", "store.write_failed")]
    row = await gw.store.get_call(ringing["call_id"])
    assert row["state"] == "ended" and "\ufffd" in row["remote_uri"]
