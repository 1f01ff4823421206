"""The running gateway (its own process) chains the audit rows of control requests made by
concurrent clients, logs and files the chain head; after it stops, rows deleted at the end with
the sqlite3 CLI are found by `audit verify` through the filed head (issue 12)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.client import GatewayClient
from tests.gateway.gateway_proc import GatewayProc
from tests.peers.sipp import free_port_block

ROOT = Path(__file__).resolve().parents[2]


def _verify(data_dir: Path) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify",
                           "--set", f"gateway.data_dir={data_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, json.loads(proc.stdout), proc.stderr


async def test_gateway_chains_heads_and_verify_finds_a_cut_tail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base = free_port_block(span=40)
    gw = GatewayProc({"gateway.data_dir": str(data), "gateway.log_format": "json",
                      "control.port": base, "http.port": base + 1, "sip.port": base + 2,
                      "sip.worker_base_port": base + 10, "sip.rtp_port_base": free_port_block(span=10, tcp=False),
                      "sip.max_workers": 1, "sip.warm_workers": 0, "sip.log_dir": str(tmp_path / "sip"),
                      "audit.head_interval_s": 0.5}, tmp_path)
    await gw.start()
    try:
        clients = [await GatewayClient.connect(gw.url, tok, reconnect=False)
                   for tok in ("tok-dispatcher", "tok-dispatcher-2", "tok-admin")]
        await asyncio.gather(*(c.call("session.create", title=f"s{i}") for i in range(20) for c in clients))
        for c in clients:
            await c.close()
        heads_file = data / "audit-heads.jsonl"
        async with asyncio.timeout(30):  # the periodic head reaches row 60 (20 requests x 3 clients)
            while not (heads_file.exists() and any(json.loads(x)["id"] >= 60 for x in heads_file.read_text().splitlines())):
                await asyncio.sleep(0.1)
        code, out, err = await asyncio.to_thread(_verify, data)  # beside the running gateway
        assert code == 0 and out["rows"] >= 60 and out["heads_checked"] >= 1, err
    finally:
        await gw.stop()
    log = [json.loads(x) for x in gw.log.read_text().splitlines() if x.startswith("{")]
    heads = [e for e in log if e.get("event") == "audit.chain_head"]
    assert heads and heads[-1]["id"] >= 60 and len(heads[-1]["hash"]) == 64
    code, out, err = await asyncio.to_thread(_verify, data)
    last = out["last_id"]
    assert code == 0 and last == heads[-1]["id"], err
    subprocess.run(["sqlite3", str(data / "gateway.db"), f"DELETE FROM audit WHERE id = {last}"], check=True, timeout=30)
    code, out, err = await asyncio.to_thread(_verify, data)
    assert code == 1 and out["problem"]["kind"] == "deleted" and out["problem"]["row_id"] == last
    assert f"row {last}" in err or f"rows {last} to {last}" in err
