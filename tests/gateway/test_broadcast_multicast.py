"""The whole gateway pages a multicast zone, and a real receiver (ffmpeg) hears it.

Everything runs inside ONE network namespace the test creates (tests/peers/netns.py); nothing
is ever sent in the host's namespace:

* ffmpeg joins the zone's group from the SDP `zone_sdp()` makes for it and records RECORD_S
  seconds to a WAV (`-t`: it ends by itself, inside the tone, and writes a complete WAV);
* once ffmpeg is a member of the group, a Python child (this module run as
  `python -m tests.gateway.test_broadcast_multicast page CODEC DIR`) starts the real gateway
  in-process with the zone configured, connects a GatewayClient as a dispatcher, calls
  `broadcast.start` to "zone:district-3" (a 2 s 1 kHz tone, no chime), waits for the broadcast's
  `ended` state and prints a JSON summary line.

The test (outside the namespace) then checks what ffmpeg recorded, the zone's broadcast.target
events and the gateway's own recording of the broadcast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broadcast.config import Zone
from gateway.broadcast.multicast import zone_sdp
from tests.audio import active_span, dominant_frequency, read_wav
from tests.peers import netns

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parents[2]
ZONE_NAME = "district-3"
GROUPS = {"PCMU": ("239.10.3.1", 5004), "G722": ("239.10.3.3", 5004)}
TONE_HZ = 1000.0
TONE_S = 2.0
# ffmpeg records less than the tone lasts: it reaches RECORD_S while packets still arrive and
# ends by itself. (After the tone the gateway sends nothing more, and a blocked RTP read does
# not end on SIGINT; a second SIGINT makes ffmpeg drop the WAV trailer.)
RECORD_S = 1.8
SUMMARY = "SUMMARY "


def _zone_override(codec: str) -> str:
    group, port = GROUPS[codec]
    return f'[{{name = "{ZONE_NAME}", group = "{group}", port = {port}, codec = "{codec}"}}]'


# --------------------------------------------------------------------------------------------
# The child: runs inside the namespace only.


async def _page(codec: str, out: Path) -> dict:
    from gateway.app import Gateway
    from gateway.client import GatewayClient
    from tests.gateway.conftest import EventWatch, gateway_config

    gw = Gateway(gateway_config(out, **{"broadcast.zone": _zone_override(codec)}))
    await gw.start()
    client = None
    watch = None
    try:
        client = await GatewayClient.connect(gw.control.url, "tok-dispatcher")
        await client.subscribe(client.hello["seq"])
        watch = EventWatch(client)
        started = await client.call(
            "broadcast.start", targets=[f"zone:{ZONE_NAME}"], priority="normal",
            source={"type": "tone", "frequency": TONE_HZ, "seconds": TONE_S}, chime=False)
        bid = started["broadcast_id"]
        ended = await watch.wait(lambda e: e["type"] == "broadcast.state"
                                 and e["data"]["broadcast_id"] == bid
                                 and e["data"]["state"] == "ended", timeout=15)
        await asyncio.sleep(0.2)  # events published right after `ended` (none expected) arrive
        targets = [e["data"] for e in watch.events
                   if e["type"] == "broadcast.target" and e["data"]["broadcast_id"] == bid]
        states = [e["data"]["state"] for e in watch.events
                  if e["type"] == "broadcast.state" and e["data"]["broadcast_id"] == bid]
        row = await gw.store.get_broadcast(bid)
        return {"started": started, "ended": ended["data"], "broadcast_states": states,
                "targets": targets, "row_state": row["state"] if row else None,
                "row_recording": row["recording"] if row else None}
    finally:
        if watch is not None:
            await watch.close()
        if client is not None:
            await client.close()
        await gw.stop()


def _page_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("codec", choices=sorted(GROUPS))
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    netns.assert_isolated()  # refuse to start a gateway that would page in the host's namespace
    summary = asyncio.run(_page(args.codec, args.dir))
    print(SUMMARY + json.dumps(summary), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The scenario, in the namespace: ffmpeg joins, the gateway pages, ffmpeg ends by itself (one
# still running 5 s after the gateway is done gets SIGINT by its PID, and has 10 s more).

SCENARIO = """\
"$FFMPEG" -hide_banner -nostdin -loglevel warning -protocol_whitelist file,rtp,udp \\
  -i "$DIR/zone.sdp" -t "$RECORD_S" -c:a pcm_s16le -y "$DIR/heard.wav" 2>"$DIR/ffmpeg.log" &
FF=$!
trap 'kill -KILL "$FF" 2>/dev/null || true' EXIT
joined=0
for _ in $(seq 1 400); do
  if ip maddr show dev lo | grep -qF "$GROUP"; then joined=1; break; fi
  kill -0 "$FF" 2>/dev/null || { echo "ffmpeg exited before joining" >&2; exit 98; }
  sleep 0.025
done
[ "$joined" = 1 ] || { echo "ffmpeg did not join $GROUP" >&2; exit 99; }
"$PYTHON" -m tests.gateway.test_broadcast_multicast page "$CODEC" "$DIR" 2>"$DIR/gateway.log"
for _ in $(seq 1 100); do kill -0 "$FF" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$FF" 2>/dev/null; then echo "ffmpeg still running: SIGINT" >&2; kill -INT "$FF"; fi
wait "$FF" || echo "ffmpeg exit status $?" >&2
trap - EXIT
"""


@dataclass(frozen=True)
class Run:
    result: subprocess.CompletedProcess[str]
    dir: Path

    @property
    def context(self) -> str:
        r = self.result
        return (f"exit {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}\n"
                f"ffmpeg log:\n{_read(self.dir / 'ffmpeg.log')}\n"
                f"gateway log (tail):\n{_read(self.dir / 'gateway.log')[-4000:]}")

    def summary(self) -> dict:
        lines = [ln for ln in self.result.stdout.splitlines() if ln.startswith(SUMMARY)]
        assert lines, f"the gateway child printed no summary\n{self.context}"
        return json.loads(lines[-1][len(SUMMARY):])


def _page_zone(codec: str, out: Path) -> Run:
    ffmpeg = netns.require_tool("ffmpeg")
    group, port = GROUPS[codec]
    (out / "zone.sdp").write_text(zone_sdp(Zone(name=ZONE_NAME, group=group, port=port, codec=codec)))
    result = netns.run_in_netns(
        SCENARIO, timeout=40, cwd=REPO,
        env={"FFMPEG": ffmpeg, "PYTHON": sys.executable, "DIR": str(out), "CODEC": codec,
             "GROUP": group, "RECORD_S": str(RECORD_S), "PYTHONPATH": str(REPO)},
    )
    return Run(result, out)


@pytest.mark.parametrize("codec", ["PCMU", "G722"])
def test_gateway_pages_a_multicast_zone(tmp_path: Path, codec: str) -> None:
    run = _page_zone(codec, tmp_path)
    ctx = run.context
    assert run.result.returncode == 0, ctx
    s = run.summary()

    # The broadcast, as the dispatcher saw it.
    assert s["started"]["state"] == "starting" and s["started"]["targets"] == {"pending": 1}, ctx
    end = s["ended"]
    assert end["end_reason"] == "completed", f"{end}\n{ctx}"
    assert end["targets"] == {"ended": 1}, f"{end}\n{ctx}"
    assert s["broadcast_states"] == ["starting", "active", "ending", "ended"], s
    assert s["row_state"] == "ended" and s["row_recording"] == end["recording"], s

    # The zone's own events: it is "dialled" and "answered" at once, and ends with the broadcast.
    zone_events = [t for t in s["targets"] if t["target"] == f"zone:{ZONE_NAME}"]
    assert [t["state"] for t in zone_events] == ["ringing", "connected", "ended"], s["targets"]
    assert all(t["kind"] == "zone" and t["attempts"] == 1 and "uri" not in t for t in zone_events), \
        zone_events
    assert len(zone_events) == len(s["targets"]), s["targets"]

    # What the receiver heard: the tone, through the zone's codec.
    wav = run.dir / "heard.wav"
    assert wav.exists(), ctx
    samples, rate = read_wav(wav)
    span = active_span(samples, rate)
    detail = f"recorded {len(samples) / rate:.2f}s at {rate} Hz, tone {len(span) / rate:.2f}s\n{ctx}"
    assert len(span) >= 1.5 * rate, detail
    assert abs(dominant_frequency(span, rate) - TONE_HZ) <= 20, detail

    # The gateway's recording of the broadcast (the audit trail) holds the whole tone.
    rec_path = Path(end["recording"])
    assert rec_path.is_relative_to(tmp_path / "data"), rec_path
    rec, rec_rate = read_wav(rec_path)
    assert abs(len(rec) / rec_rate - TONE_S) < 0.1, f"recording {len(rec) / rec_rate:.2f}s"
    assert abs(dominant_frequency(rec, rec_rate) - TONE_HZ) < 5


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(none)"


if __name__ == "__main__":
    if sys.argv[1:2] != ["page"]:
        sys.exit("usage: python -m tests.gateway.test_broadcast_multicast page CODEC DIR")
    sys.exit(_page_main(sys.argv[2:]))
