"""`SipConfig`: the `[sip]` section, a frozen dataclass (validated by gateway/config.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SipRegistration:
    registrar: str
    username: str
    password: str
    realm: str = "*"
    expires: int = 300


@dataclass(frozen=True)
class SipConfig:
    host: str = "127.0.0.1"  # the one public SIP address of the gateway
    port: int = 5060
    proxy: str = "auto"  # auto: Kamailio in front when max_workers > 1; "none"; "external"
    worker_host: str = "127.0.0.1"
    worker_base_port: int = 5070  # worker i binds worker_host:worker_base_port + 10*i
    rtp_port_base: int = 20000  # worker i uses rtp_port_base + 1000*i .. +999
    max_workers: int = 4
    warm_workers: int = 1
    calls_per_worker: int = 0  # 0 = what the installed pjsua2 allows (probed at start)
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722")
    user: str = "gateway"
    display_name: str = "Dispatch"
    kamailio_bin: str = "kamailio"
    registration: SipRegistration | None = None
    # Not in the [sip] contract table but useful: pjsua log level for worker stderr and where
    # worker logs go (None: a temp file per worker).
    log_level: int = 2
    log_dir: str | None = None
    audio_queue_frames: int = 50  # per call, frames queued towards the call (drop-oldest)

    def __post_init__(self) -> None:
        if isinstance(self.codecs, list):
            object.__setattr__(self, "codecs", tuple(self.codecs))
        if isinstance(self.registration, dict):
            object.__setattr__(self, "registration", SipRegistration(**self.registration))
        if self.proxy not in ("auto", "none", "external"):
            raise ValueError(f"sip.proxy: {self.proxy!r} is not auto, none or external")
        if self.max_workers < 1:
            raise ValueError("sip.max_workers must be >= 1")
        if not 0 <= self.warm_workers <= self.max_workers:
            raise ValueError("sip.warm_workers must be within 0..max_workers")
        if self.calls_per_worker < 0:
            raise ValueError("sip.calls_per_worker must be >= 0")

    @property
    def proxied(self) -> bool:
        """True when workers sit behind a proxy (Kamailio) and bind worker ports."""
        if self.proxy == "none" or self.max_workers == 1:
            return False
        return True

    def worker_address(self, index: int) -> tuple[str, int]:
        """The SIP address worker `index` binds."""
        if not self.proxied and index == 0:
            return self.host, self.port
        return self.worker_host, self.worker_base_port + 10 * index

    def worker_rtp_port(self, index: int) -> int:
        return self.rtp_port_base + 1000 * index

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["codecs"] = list(self.codecs)
        return d


def worker_config(cfg: SipConfig, index: int, max_calls: int) -> dict[str, Any]:
    """The JSON config handed to worker `index` (`python -m sip.worker --config-json ...`)."""
    host, port = cfg.worker_address(index)
    reg = asdict(cfg.registration) if cfg.registration and (index == 0 or not cfg.proxied) else None
    return {
        "index": index,
        "host": host,
        "port": port,
        "public_host": cfg.host,  # the gateway's identity (From) is its public address
        "public_port": cfg.port,
        "rtp_port": cfg.worker_rtp_port(index),
        "rtp_port_range": 999,
        "max_calls": max_calls,
        "codecs": list(cfg.codecs),
        "user": cfg.user,
        "display_name": cfg.display_name,
        "registration": reg,
        "log_level": cfg.log_level,
        "audio_queue_frames": cfg.audio_queue_frames,
    }
