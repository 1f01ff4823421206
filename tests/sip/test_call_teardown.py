"""An ended call's pjsua2 `Call` object is released without touching the call that took over its
pjsua call slot (docs/design.md, "Call object teardown"), driven step by step through a real
worker (tests/sip/slot_reuse.py, in a process of its own) against SIPp."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import pytest

from tests.peers.ports import free_udp_port
from tests.peers.sipp import sipp_uac, sipp_uas

from .conftest import ROOT

pytestmark = pytest.mark.peers


async def _run_slot_reuse(mode: str, answers: int = 1) -> dict:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes INVITEs, never answers
    hole.bind(("127.0.0.1", 0))
    try:
        async with sipp_uas("busy") as busy, sipp_uas("answer", calls=answers) as answer:
            port = free_udp_port()  # the worker's, bound by the script right away
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.sip.slot_reuse", mode, "--port", str(port),
                "--hole", f"sip:hole@127.0.0.1:{hole.getsockname()[1]}", "--busy", busy.uri,
                "--answer", answer.uri, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                assert proc.stdout is not None
                report = None
                async with asyncio.timeout(45):
                    while line := await proc.stdout.readline():
                        text = line.decode(errors="replace").strip()
                        if text == "A-ended" and mode == "inbound":
                            caller = sipp_uac(f"127.0.0.1:{port}", hold_ms=300)
                            await caller.start()
                        elif text.startswith("{"):
                            report = json.loads(text)
                    rc = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            if mode == "inbound":
                res = await caller.wait(15)
                report["caller"] = (res.returncode, res.successful)
            else:
                res = await answer.wait(15)
                report["callee"] = (res.returncode, res.successful)
    finally:
        hole.close()
    err = (await proc.stderr.read()).decode(errors="replace")[-2000:] if proc.stderr else ""
    assert rc == 0 and report is not None, f"rc={rc}: {err}"
    return report


@pytest.mark.parametrize("mode", ["outbound", "inbound"])
async def test_new_call_in_an_ended_calls_slot_runs_to_its_end(mode: str) -> None:
    """The worker is full, call A ends on a 486 (its slot is free, its WCall not yet released),
    and in the same loop turn a new call B takes that slot (B dialled, or B arriving); then the
    graveyard is released. B must still be confirmed and end normally. Before the fix B was
    silently cancelled (its states stopped at `calling` / `connecting`) in 4 runs out of 4."""
    report = await _run_slot_reuse(mode)
    assert report["a_ended"], report
    assert report["b_slot"] == report["a_slot"], report  # the scenario really reused the slot
    assert report["b_states"][-2:] == ["confirmed", "disconnected"], report
    peer = report["caller"] if mode == "inbound" else report["callee"]
    assert peer == (0, 1), report


async def test_dial_right_after_hangups_waits_for_a_slot() -> None:
    """A full worker hangs up all its calls and is asked to dial before the BYEs are answered
    (pjsua still holds those slots): the dial waits for a slot instead of answering no-capacity
    although no call is live. Before the fix the dial failed no-capacity (PJ_ETOOMANY)."""
    report = await _run_slot_reuse("redial", answers=5)
    assert report["a_ended"], report  # every old call ended (DISCONNECTED) before the dial
    assert [r["ok"] for r in report["replies"] if r["id"] == 11] == [True], report
    assert report["b_states"][-2:] == ["confirmed", "disconnected"], report
    assert report["callee"] == (0, 5), report
