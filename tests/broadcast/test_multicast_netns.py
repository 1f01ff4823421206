"""Multicast RTP to a real receiver: ffmpeg joins the zone (from its SDP) and records a WAV.

Everything runs inside a network namespace the test creates (tests/peers/netns.py): ffmpeg and
the sender (this module run as `python -m tests.broadcast.test_multicast_netns send ...`, using
gateway.broadcast.multicast) share it, and nothing is sent in the host's namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broadcast.config import Zone
from gateway.broadcast.multicast import MulticastSender, zone_sdp
from tests.audio import active_span, dominant_frequency, frames, read_wav, tone
from tests.peers import netns

REPO = Path(__file__).resolve().parents[2]
TONE_HZ = 1000.0
TONE_S = 2.0
FRAME_S = 0.020
# Silence sent after the tone, and how much ffmpeg records (`-t`): it ends on its own once the
# stream reaches RECORD_S, inside the silence, and writes a complete WAV. (A SIGINT does not
# end ffmpeg's blocking RTP read; a second one makes it drop the WAV trailer.)
TAIL_S = 0.5
RECORD_S = 2.3


@dataclass(frozen=True)
class RawZone:
    """A zone that skips config validation, to show the sender checks for itself."""

    name: str
    group: str
    port: int
    codec: str
    ttl: int = 1
    interface: str = "127.0.0.1"


ZONES = [
    Zone(name="test-pcmu", group="239.10.0.1", port=5004, codec="PCMU"),
    Zone(name="test-pcma", group="239.10.0.2", port=5006, codec="PCMA"),
    Zone(name="test-g722", group="239.10.0.3", port=5008, codec="G722"),
]


async def _paced_send(senders: list[MulticastSender], pcm_frames: list[bytes]) -> None:
    """One frame per 20 ms to every zone, on absolute deadlines (no drift)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, frame in enumerate(pcm_frames):
        delay = start + i * FRAME_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for sender in senders:
            sender.send_frame(frame)


def _send_main(argv: list[str]) -> int:
    """The sender child (`send CODEC:GROUP:PORT ...`): runs inside the test's namespace only."""
    parser = argparse.ArgumentParser()
    parser.add_argument("zones", nargs="+", metavar="CODEC:GROUP:PORT")
    args = parser.parse_args(argv)
    netns.assert_isolated()
    zones = []
    for spec in args.zones:
        codec, group, port = spec.split(":")
        zones.append(Zone(name=f"test-{codec}", group=group, port=int(port), codec=codec))
    pcm_frames = frames(tone(TONE_HZ, TONE_S) + bytes(int(TAIL_S * 16000) * 2))
    senders = [MulticastSender(zone) for zone in zones]
    t0 = time.monotonic()
    try:
        asyncio.run(_paced_send(senders, pcm_frames))
    finally:
        for sender in senders:
            sender.close()
    stats = {"frames": len(pcm_frames), "seconds": round(time.monotonic() - t0, 3),
             "dropped": {s.codec: s.dropped for s in senders}}
    print(json.dumps(stats))
    return 0


# Inside the namespace: one ffmpeg per zone joins via the zone's SDP and records RECORD_S seconds
# to a WAV; once all are members of their groups, the sender runs. Each ffmpeg should then have
# ended by itself; one that has not within 3 s is sent SIGINT by its PID (and has 12 s more).
SCENARIO = """\
declare -A FF
for spec in $ZONES; do
  IFS=: read -r codec group port <<<"$spec"
  "$FFMPEG" -hide_banner -nostdin -loglevel warning -protocol_whitelist file,rtp,udp \\
    -i "$DIR/$codec.sdp" -t "$RECORD_S" -c:a pcm_s16le -y "$DIR/$codec.wav" 2>"$DIR/$codec.log" &
  FF[$codec]=$!
done
trap 'for p in "${FF[@]}"; do kill -KILL "$p" 2>/dev/null || true; done' EXIT
for spec in $ZONES; do
  IFS=: read -r codec group port <<<"$spec"
  joined=0
  for _ in $(seq 1 1200); do  # up to 30 s: ffmpeg starts slowly on a loaded machine
    if ip maddr show dev lo | grep -qF "$group"; then joined=1; break; fi
    kill -0 "${FF[$codec]}" 2>/dev/null || { echo "ffmpeg $codec exited" >&2; exit 98; }
    sleep 0.025
  done
  [ "$joined" = 1 ] || { echo "ffmpeg $codec did not join $group" >&2; exit 99; }
done
"$PYTHON" -m tests.broadcast.test_multicast_netns send $ZONES
for codec in "${!FF[@]}"; do
  p=${FF[$codec]}
  for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$p" 2>/dev/null; then echo "ffmpeg $codec still running: SIGINT" >&2; kill -INT "$p"; fi
  wait "$p" || echo "ffmpeg $codec exit status $?" >&2
done
trap - EXIT
"""


@dataclass(frozen=True)
class Run:
    result: subprocess.CompletedProcess[str]
    dir: Path

    def context(self, codec: str) -> str:
        r = self.result
        return (f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}\n"
                f"ffmpeg {codec} log:\n{_read(self.dir / f'{codec}.log')}")


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """All three zones at once, in one namespace: one sender process, three ffmpeg receivers."""
    ffmpeg = netns.require_tool("ffmpeg")
    out = tmp_path_factory.mktemp("multicast")
    for zone in ZONES:
        (out / f"{zone.codec}.sdp").write_text(zone_sdp(zone))
    spec = " ".join(f"{z.codec}:{z.group}:{z.port}" for z in ZONES)
    result = netns.run_in_netns(
        SCENARIO, timeout=30, cwd=REPO,
        env={"FFMPEG": ffmpeg, "PYTHON": sys.executable, "DIR": str(out), "ZONES": spec,
             "RECORD_S": str(RECORD_S)},
    )
    return Run(result, out)


@pytest.mark.peers
@pytest.mark.parametrize("codec", [z.codec for z in ZONES])
def test_ffmpeg_records_the_zone_tone(received: Run, codec: str) -> None:
    context = received.context(codec)
    assert received.result.returncode == 0, context
    stats = json.loads(received.result.stdout.strip().splitlines()[-1])
    assert stats["dropped"][codec] == 0, context
    wav = received.dir / f"{codec}.wav"
    assert wav.exists(), context

    samples, rate = read_wav(wav)
    span = active_span(samples, rate)
    detail = (f"{context}\nrecorded {len(samples) / rate:.2f}s at {rate} Hz, "
              f"tone {len(span) / rate:.2f}s")
    assert len(span) >= 1.5 * rate, detail
    assert abs(dominant_frequency(span, rate) - TONE_HZ) <= 20, detail


@pytest.mark.parametrize(
    ("codec", "rtpmap"), [("PCMU", "0 PCMU/8000"), ("PCMA", "8 PCMA/8000"), ("G722", "9 G722/8000")]
)
def test_zone_sdp(codec: str, rtpmap: str) -> None:
    zone = Zone(name="district-3", group="239.10.0.3", port=5004, codec=codec, ttl=1,
                interface="127.0.0.1")
    sdp = zone_sdp(zone, session_id=42)
    assert sdp.endswith("\r\n")
    assert sdp.split("\r\n")[:-1] == [
        "v=0",
        "o=- 42 42 IN IP4 127.0.0.1",
        "s=district-3",
        "c=IN IP4 239.10.0.3/1",
        "t=0 0",
        f"m=audio 5004 RTP/AVP {rtpmap.split()[0]}",
        f"a=rtpmap:{rtpmap}",
        "a=ptime:20",
        "a=recvonly",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group": "10.0.0.1"}, "not an IPv4 multicast"),
        ({"group": "ff02::1"}, "not an IPv4 multicast"),
        ({"group": "zone-3"}, "not an IP address"),
        ({"port": 0}, "port"),
        ({"codec": "OPUS"}, "codec"),
        ({"ttl": 256}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"interface": "eth0"}, "interface"),
    ],
)
def test_bad_zone_is_refused_before_any_socket(change: dict, message: str) -> None:
    zone = dataclasses.replace(RawZone("test-pcmu", "239.10.0.1", 5004, "PCMU"), **change)
    with pytest.raises(ValueError, match=message):
        MulticastSender(zone)
    with pytest.raises(ValueError, match=message):
        zone_sdp(zone)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(none)"


if __name__ == "__main__":
    if sys.argv[1:2] != ["send"]:
        sys.exit("usage: python -m tests.broadcast.test_multicast_netns send CODEC:GROUP:PORT ...")
    sys.exit(_send_main(sys.argv[2:]))
