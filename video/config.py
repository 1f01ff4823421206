"""`[video]`: the Janus instances the gateway runs and what terminals and consoles are told.

Off by default (`enabled = false`): a gateway without video starts no Janus. With it, the
gateway starts `instances` Janus processes; instance i listens (API, loopback only) on
`ws_base_port + i` and takes the i-th equal share of `rtp_port_min..rtp_port_max`.
`ice_servers` (STUN/TURN URLs) are handed to terminals and consoles with each offer; empty by
default, never a public default. `ice_enforce_list` limits Janus's candidates to those
interfaces (e.g. the one facing the field network).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from video.janus_config import JanusSettings

ICE_SCHEMES = ("stun:", "turn:", "turns:")


@dataclass(frozen=True)
class RemoteJanus:
    """A Janus run elsewhere (`[[video.remote]]`): its WebSocket API and its API secret."""

    url: str
    api_secret: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname or not parts.port:
            raise ValueError(f"remote: url must be ws://host:port or wss://host:port, got {self.url!r}")
        if not self.api_secret:
            raise ValueError("remote: api_secret is required (Janus's api_secret)")

    def settings(self, index: int) -> JanusSettings:
        parts = urlsplit(self.url)
        return JanusSettings(ws_host=parts.hostname or "", ws_port=parts.port or 0, api_secret=self.api_secret,
                             name=f"remote-{index + 1}", ws_scheme=parts.scheme)


@dataclass(frozen=True)
class VideoConfig:
    enabled: bool = False
    instances: int = 1
    janus_bin: str = "janus"
    pp_rec_bin: str = "janus-pp-rec"
    ffmpeg_bin: str = "ffmpeg"
    ws_host: str = "127.0.0.1"
    ws_base_port: int = 8188
    rtp_port_min: int = 40000
    rtp_port_max: int = 49999
    ice_enforce_list: str = ""
    sip_ip: str = "127.0.0.1"  # where Janus's SIP plugin speaks SIP and RTP to phones
    ice_servers: tuple[str, ...] = ()
    session_timeout_s: int = 60
    publish_timeout_s: float = 30.0
    request_timeout_s: float = 10.0
    recordings_dir: str = "recordings/video"  # under gateway.data_dir unless absolute
    postprocess_timeout_s: float = 300.0
    remote: tuple[RemoteJanus, ...] = ()  # Janus instances on other hosts: connected, not started

    def __post_init__(self) -> None:
        if not 0 <= self.instances <= 64 or (self.enabled and self.instances + len(self.remote) == 0):
            raise ValueError(f"instances must be 0..64 (0 only with remote ones), got {self.instances}")
        span = self.rtp_port_max - self.rtp_port_min + 1
        if span < 2 * max(1, self.instances):
            raise ValueError("rtp_port_min..rtp_port_max is too small for the instances")
        if self.ws_base_port + self.instances - 1 > 65535:
            raise ValueError("ws_base_port + instances goes past 65535")
        for url in self.ice_servers:
            if not url.startswith(ICE_SCHEMES):
                raise ValueError(f"ice_servers: {url!r} is not a stun:, turn: or turns: URL")

    def janus_settings(self, index: int) -> JanusSettings:
        """Settings of instance `index` (0-based): its API port and its share of RTP ports."""
        share = (self.rtp_port_max - self.rtp_port_min + 1) // max(1, self.instances)
        lo = self.rtp_port_min + index * share
        return JanusSettings(
            ws_host=self.ws_host, ws_port=self.ws_base_port + index,
            rtp_port_range=f"{lo}-{lo + share - 1}", ice_enforce_list=self.ice_enforce_list,
            session_timeout_s=self.session_timeout_s, sip_ip=self.sip_ip, name=f"janus-{index + 1}")

    @property
    def keepalive_s(self) -> float:
        return max(1.0, self.session_timeout_s / 3)

    def rtc_ice_servers(self) -> list[dict[str, object]]:
        """`iceServers` as an RTCPeerConnection takes them."""
        return [{"urls": url} for url in self.ice_servers]
