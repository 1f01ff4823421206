"""Kill -9 mid-send of 1,000 SMS, restart on the same data dir: none lost, none duplicated.

The gateway runs as its own process (`python -m gateway.cli serve --set ...`); this process runs
the stateful Twilio stub and Prism (validating proxy, Twilio's spec) in front of it:
gateway -> Prism -> stub for the API, stub -> gateway's http port for the signed callbacks.

To make the kill bite, the stub is told (`delay_next`) to hold the answers of a handful of
creates once 300 have been accepted: those messages are stored at the stub but the gateway has
no reply, so they are `sending` in its store when it dies. Recovery must find them with
`find_sent` instead of sending them again; the store is read between kill and restart to prove
they were there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.client import GatewayClient
from tests.gateway.gateway_proc import gateway_proc, store_rows, wait_until
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.ports import free_port_block, free_tcp_port
from tests.peers.prism import ensure_prism, prism_proxy, repo_root, twilio_spec_for_prism
from tests.peers.twilio_stub import twilio_stub

pytestmark = pytest.mark.peers

FINAL = ("delivered", "undelivered", "failed")
N = 1000
KILL_AFTER = 300  # creates accepted by the stub before the kill
HELD = 8          # creates stored at the stub whose answers are held back at the kill
HOLD_S = 8.0


def sms_gateway_overrides(data_dir: Path, api_base: str, *, rate_per_s: float, burst: float,
                          in_flight: int = 20, timeout_s: float = 20, log_level: str = "info") -> dict[str, Any]:
    """--set values for a gateway that sends SMS through Twilio at `api_base`; fixed ports, so a
    restart on the same data dir answers on the same URLs."""
    sip = free_port_block(span=20)
    http_port = free_port_block(span=1)
    return {
        "gateway.data_dir": str(data_dir), "gateway.log_format": "json", "gateway.log_level": log_level,
        "control.port": free_tcp_port(), "http.port": http_port,
        "sip.proxy": "none", "sip.port": sip, "sip.worker_base_port": sip + 10,
        "sip.rtp_port_base": free_port_block(span=10, tcp=False), "sip.max_workers": 1,
        "sip.warm_workers": 0, "sip.log_dir": str(data_dir.parent / "sip-logs"),
        "sms.provider": "twilio", "sms.rate_per_s": rate_per_s, "sms.burst": burst,
        "sms.in_flight": in_flight, "sms.base_delay_s": 0.2, "sms.max_delay_s": 1,
        "sms.reconcile_after_s": 2,  # receipts lost with the killed process are looked up soon
        "sms.twilio.account_sid": SID, "sms.twilio.auth_token": TOKEN, "sms.twilio.api_base": api_base,
        "sms.twilio.public_url": f"http://127.0.0.1:{http_port}", "sms.twilio.timeout_s": timeout_s,
    }


def store_states(path: str) -> dict[str, int]:
    """States of the sms rows, read straight from SQLite (the gateway is dead or busy)."""
    return dict(store_rows(path, "SELECT state, COUNT(*) FROM sms GROUP BY state"))


async def wait_handed_over(url: str, send_id: str, n: int, timeout: float) -> dict[str, int]:
    """Poll sms.get until no message of the send is queued or sending; the counts."""
    return await wait_final(url, send_id, n, timeout, done=("sent", *FINAL), strict=True)


async def wait_final(url: str, send_id: str, n: int, timeout: float, *, done: Sequence[str] = FINAL,
                     strict: bool = False) -> dict[str, int]:
    """Poll sms.get until all n messages of the send are in `done` states; the counts (when time is
    up: an AssertionError if `strict`, else the counts as they are)."""
    deadline = time.monotonic() + timeout
    client = await GatewayClient.connect(url, "tok-dispatcher", reconnect=False)
    try:
        while True:
            counts = (await client.call("sms.get", send_id=send_id))["counts"]
            if sum(counts.get(s, 0) for s in done) >= n:
                return counts
            if time.monotonic() > deadline:
                if strict:
                    raise AssertionError(f"not all {'/'.join(done)} after {timeout} s: {counts}")
                return counts
            await asyncio.sleep(0.25)
    finally:
        await client.close()


def numbers(n: int, base: int = 8613900000000) -> list[str]:
    return [f"+{base + i}" for i in range(n)]


def sum_creates(creates: Any) -> int:
    return sum(creates.values())


async def test_kill9_mid_send_of_1000_none_lost_none_duplicated(tmp_path) -> None:
    t_start = time.monotonic()
    to: Sequence[str] = numbers(N)
    async with twilio_stub(SID, TOKEN) as stub:
        spec, _ = twilio_spec_for_prism(tmp_path)
        binary = await ensure_prism(repo_root() / ".cache" / "prism")
        async with prism_proxy(binary, spec, stub.url, log=tmp_path / "prism.log") as prism:
            overrides = sms_gateway_overrides(tmp_path / "data", prism.url, rate_per_s=200, burst=20)
            async with gateway_proc(overrides, tmp_path) as gw:
                await gw.start()
                client = await GatewayClient.connect(gw.url, "tok-dispatcher", reconnect=False)
                try:
                    sent = await client.call("sms.send", to=list(to), body="Evacuate district 3 now: crash test")
                finally:
                    await client.close()
                assert sent["recipients"] == N

                await wait_until(lambda: sum_creates(stub.creates) >= KILL_AFTER, 60, f"{KILL_AFTER} creates")
                at_hold = sum_creates(stub.creates)
                stub.delay_next(HELD, HOLD_S)  # the next HELD creates: stored, answered too late
                await wait_until(lambda: sum_creates(stub.creates) >= at_hold + HELD, 20, "held creates")
                await gw.kill9()
                at_kill = sum_creates(stub.creates)

                states = store_states(gw.store_path)
                assert sum(states.values()) == N, states
                assert states.get("sending", 0) >= HELD, f"no create in flight at the kill: {states}"
                assert KILL_AFTER <= at_kill < N, at_kill

                await gw.start()
                # Every message handed to the provider (none left queued/sending), then the stub's
                # books: exactly one accepted create per number, and no other create even tried.
                handed = await wait_handed_over(gw.url, sent["send_id"], N, timeout=60)
                recovered = gw.log_events(2, "sms.recovered")
                assert stub.create_attempts == N, stub.create_attempts
                assert set(stub.creates) == set(to), f"lost: {len(set(to) - set(stub.creates))}"
                dup = {k: v for k, v in stub.creates.items() if v != 1}
                assert not dup, f"duplicated: {len(dup)} e.g. {list(dup.items())[:5]}"
                assert recovered and recovered[0]["reconciled"] >= HELD, recovered
                # `resent` may be > 0: a row marked `sending` whose create had not reached the stub
                assert recovered[0]["reconciled"] + recovered[0]["resent"] >= states["sending"], recovered
                assert prism.violations() == [], prism.violations()[:5]
                counts = await wait_final(gw.url, sent["send_id"], N, timeout=40)
                print(f"\nkill at {at_kill} creates; store at kill {states}; recovery {recovered[0]};"
                      f" handed over {handed}; final {counts}; total {time.monotonic() - t_start:.1f} s")
                assert counts == {"delivered": N}, counts
                assert store_states(gw.store_path) == {"delivered": N}
                print(f"\nkill at {at_kill} creates; store at kill {states}; recovery {recovered[0]};"
                      f" total {time.monotonic() - t_start:.1f} s")
