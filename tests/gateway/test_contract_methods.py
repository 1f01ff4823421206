"""Every method of the contract against a gateway with a populated directory: no internal-error.

The methods come from the gateway's own registry, so a method added later without a sample here
fails `test_every_method_has_a_sample` instead of going untested (issue 7, section 5)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.client import RemoteError
from gateway.errors import INTERNAL_ERROR
from gateway.timeutil import now_iso
from tests.peers.ports import free_udp_port

pytestmark = pytest.mark.peers  # SIP workers (pjsua2)

ENDPOINTS = (
    '[{name = "desk-1", uri = "sip:desk1@127.0.0.1:%(p)d", kind = "phone", groups = ["dispatch"],'
    ' display_name = "Desk 1"},'
    ' {name = "yard", uri = "sip:yard@127.0.0.1:%(p)d", kind = "speaker", groups = ["yard", "all"],'
    ' profile = "rfc5373"},'
    ' {name = "pstn", uri = "tel:+15550100", kind = "trunk", groups = ["all"]},'
    ' {name = "unit-7", kind = "terminal", groups = ["field"], phone = "+15550107"}]'
)
ZONES = '[{name = "district-3", group = "239.10.0.3", port = 5004, codec = "PCMU", interface = "127.0.0.1"}]'

# One call per method, in this order; "{session_id}" etc. are filled from earlier results.
SAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"token": "tok-admin"},
    "ping": {},
    "session.create": {"title": "contract"},
    "session.list": {},
    "session.get": {"session_id": "{session_id}"},
    "events.subscribe": {"since_seq": 0},
    "directory.list": {},
    "call.dial": {"target": "desk-1", "session_id": "{session_id}", "timeout_s": 2},
    "call.list": {"session_id": "{session_id}"},
    "call.answer": {"call_id": "{call_id}"},
    "call.reject": {"call_id": "{call_id}"},
    "call.hold": {"call_id": "{call_id}"},
    "call.unhold": {"call_id": "{call_id}"},
    "call.dtmf": {"call_id": "{call_id}", "digits": "12#"},
    "call.transfer": {"call_id": "{call_id}", "target": "group:dispatch"},
    "call.listen": {"call_id": "{call_id}"},
    "media.open": {"call_id": "{call_id}"},
    "media.close": {"channel": 1},
    "call.hangup": {"call_id": "{call_id}"},
    "broadcast.start": {"targets": ["group:all", "zone:district-3", "desk-1"],
                        "source": {"type": "tone", "seconds": 0.5}, "chime": False},
    "broadcast.get": {"broadcast_id": "{broadcast_id}"},
    "broadcast.stop": {"broadcast_id": "{broadcast_id}"},
    "sms.preview": {"body": "test"},
    "sms.templates": {},
    "sms.send": {"to": ["+15550100", "pstn"], "body": "test"},
    "sms.get": {"send_id": "nope"},
    "terminal.report": {"terminal_id": "unit-7", "lat": 31.2, "lon": 121.5, "accuracy_m": 5, "time": "{now}"},
    "terminal.list": {},
    "terminal.track": {"terminal_id": "unit-7"},
    "terminal.feedback": {"terminal_id": "unit-7", "session_id": "{session_id}", "text": "on scene"},
    "video.pull": {"terminal_id": "unit-7"},
    "video.publish": {"stream_id": "vid-none", "sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\n"},
    "video.watch": {"stream_id": "vid-none"},
    "video.answer": {"watch_id": "watch-none", "sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\n"},
    "video.unwatch": {"watch_id": "watch-none"},
    "video.get": {"stream_id": "vid-none"},
    "video.list": {},
    "video.stop": {"stream_id": "vid-none"},
    "voice.bridge": {"terminal_id": "unit-7", "target": "desk-1"},
    "voice.publish": {"bridge_id": "voice-none", "sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n"},
    "voice.get": {"bridge_id": "voice-none"},
    "voice.hangup": {"bridge_id": "voice-none"},
    "terminal.instruct": {"targets": ["unit-7", "group:field"], "text": "report", "ack_timeout_s": 60},
    "terminal.instruction.get": {"instruction_id": "{instruction_id}"},
    "terminal.received": {"instruction_id": "{instruction_id}", "terminal_id": "unit-7"},
    "terminal.ack": {"instruction_id": "{instruction_id}", "terminal_id": "unit-7"},
    "terminal.instructions": {"terminal_id": "unit-7", "state": "all", "limit": 10},
    "conference.create": {"session_id": "{session_id}", "title": "contract"},
    "conference.add": {"conference_id": "{conference_id}", "console": True},  # no phone needed
    "conference.mute": {"conference_id": "{conference_id}", "member_id": "{member_id}"},
    "conference.unmute": {"conference_id": "{conference_id}", "member_id": "{member_id}"},
    "conference.get": {"conference_id": "{conference_id}"},
    "conference.list": {},
    "conference.remove": {"conference_id": "{conference_id}", "member_id": "{member_id}"},
    "conference.end": {"conference_id": "{conference_id}"},
    "session.close": {"session_id": "{session_id}"},
    "kpi.get": {"since": "{now}", "group_by": "hour"},
    # planned (a window starting in the past is refused: maintenance-in-past)
    "kpi.maintenance.add": {"start": "2099-01-01T00:00:00Z", "end": "2099-01-01T01:00:00Z", "reason": "contract"},
    "kpi.maintenance.list": {"since": "2025-12-31T00:00:00Z"},
    "kpi.maintenance.delete": {"maintenance_id": 1},  # the window just added, planned: deleted
}


def _fill(value: Any, known: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return known.get(value[1:-1], "unknown-id")
    if isinstance(value, dict):
        return {k: _fill(v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, known) for v in value]
    return value


async def test_every_method_answers_without_internal_error(start_gateway, connect) -> None:
    dead = free_udp_port("127.0.0.1")  # nobody answers there: calls and pages fail cleanly
    # Every method from every role, back to back: more than a terminal's or an observer's request
    # budget allows at once (tests/gateway/test_request_budget.py tests the budget).
    budget = "{rate = 1000, burst = 1000}"
    gw = await start_gateway(**{"directory.endpoint": ENDPOINTS % {"p": dead}, "broadcast.zone": ZONES,
                                "control.request_budget.terminal": budget,
                                "control.request_budget.observer": budget})
    assert set(SAMPLES) == set(gw.registry.methods), "add a sample for every method of the contract"
    root = await connect(gw, "tok-admin")
    olga = await connect(gw, "tok-observer")
    unit = await connect(gw, "tok-terminal")
    known: dict[str, str] = {"now": now_iso()}
    outcomes: dict[tuple[str, str], str] = {}
    for method, params in SAMPLES.items():
        for client in (root, olga, unit):
            try:
                result = await client.call(method, **_fill(params, known))
            except RemoteError as err:
                assert err.code != INTERNAL_ERROR, (method, client.hello["role"], err.message)
                outcomes[(method, client.hello["role"])] = err.reason
                continue
            outcomes[(method, client.hello["role"])] = "ok"
            for key in ("session_id", "call_id", "broadcast_id", "instruction_id", "conference_id", "member_id"):
                if isinstance(result.get(key), str):
                    known.setdefault(key, result[key])
    listing = await root.call("directory.list")
    assert [e["name"] for e in listing["endpoints"]] == ["desk-1", "yard", "pstn", "unit-7"]
    assert listing["groups"] == ["all", "dispatch", "field", "yard"]
    assert listing["zones"] == [{"name": "district-3", "codec": "PCMU"}]
    assert listing["priorities"] == ["emergency", "normal", "routine"]  # broadcast.priorities, highest first
    assert (await root.call("directory.list", kind="trunk"))["endpoints"][0]["uri"] == "tel:+15550100"
    for method in ("directory.list", "session.get", "call.dial", "broadcast.start", "broadcast.get"):
        assert outcomes[(method, "admin")] == "ok", outcomes
    assert outcomes[("directory.list", "observer")] == "ok"
    assert outcomes[("call.dial", "observer")] == "forbidden"
    for method in ("terminal.report", "terminal.track", "terminal.feedback"):  # itself, or an admin naming it
        assert outcomes[(method, "terminal")] == outcomes[(method, "admin")] == "ok", outcomes
    assert outcomes[("terminal.list", "observer")] == "ok"
    assert outcomes[("terminal.list", "terminal")] == outcomes[("terminal.report", "observer")] == "forbidden"
    for method in ("terminal.instruct", "terminal.instruction.get", "terminal.received", "terminal.ack"):
        assert outcomes[(method, "admin")] == "ok", (method, outcomes)
    assert outcomes[("terminal.ack", "terminal")] == "ok"  # its own instruction (terminal_id: itself)
    assert outcomes[("terminal.instructions", "terminal")] == outcomes[("terminal.instructions", "admin")] == "ok"
    assert outcomes[("terminal.instructions", "observer")] == "forbidden"
    assert outcomes[("terminal.instruct", "terminal")] == outcomes[("terminal.ack", "observer")] == "forbidden"
    assert outcomes[("terminal.feedback", "observer")] == "forbidden"
    for method in ("conference.create", "conference.add", "conference.mute", "conference.unmute",
                   "conference.get", "conference.list", "conference.remove", "conference.end"):
        assert outcomes[(method, "admin")] == "ok", (method, outcomes)
    assert outcomes[("conference.add", "observer")] == "forbidden"
    assert outcomes[("conference.list", "observer")] == "ok" and outcomes[("conference.list", "terminal")] == "forbidden"
    assert outcomes[("kpi.get", "admin")] == outcomes[("kpi.get", "observer")] == "ok", outcomes
    assert outcomes[("kpi.get", "terminal")] == outcomes[("kpi.maintenance.add", "observer")] == "forbidden"
    assert outcomes[("kpi.maintenance.add", "admin")] == "ok"
    assert outcomes[("kpi.maintenance.list", "observer")] == "ok"
    assert outcomes[("kpi.maintenance.list", "terminal")] == outcomes[("kpi.maintenance.delete", "observer")] \
        == "forbidden"
    assert outcomes[("kpi.maintenance.delete", "admin")] == "ok"
