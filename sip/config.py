"""`SipConfig`: the `[sip]` section, a frozen dataclass (validated by gateway/config.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .admission import inbound_shares

# RTP ports each worker owns: rtp_port_base + RTP_PORTS_PER_WORKER*i .. + RTP_PORTS_PER_WORKER-1.
# A call takes two (RTP, RTCP) and a worker holds calls_per_worker calls (a handful with the
# pjsua2 wheel's compiled limit), so 100 leaves room; 64 workers from 20000 end at 26399.
RTP_PORTS_PER_WORKER = 100
PORT_MAX = 65535


# The jitter buffer counts the codec's frames: 10 ms for G.711 and G.722 (whatever the packets'
# ptime), 20 ms for others pjsua has. pjmedia's stream turns each ms setting into frames (jbMax
# rounded up, the others down) and takes -1, or anything under a frame, as its default: 500 ms
# held at most, prefetch from 1 frame to 80 % of that, no initial prefetch (0: prefetch off).
CODEC_FRAMES_MS = (10, 20)
PJSUA_JB_MAX_MS = 500
# Ours: argued in docs/design.md, "Jitter buffer"; measured in docs/benchmarks.md, "Conferences".
JB_DEFAULTS = {"jb_init_ms": 0, "jb_min_prefetch_ms": -1, "jb_max_prefetch_ms": -1, "jb_max_ms": 160}


def jitter_buffer_problem(init_ms: int, min_prefetch_ms: int, max_prefetch_ms: int, max_ms: int) -> str | None:
    """Why pjmedia would refuse these jitter buffer settings for a codec (its set_adaptive asserts
    min <= max prefetch <= the buffer and initial <= max prefetch: a build with assertions
    aborts), or None when they are fine. Each is -1 (pjsua's default) or at least 20 ms (a frame of
    every codec, so none falls back to its default); the initial prefetch may be 0 (off)."""
    given = {"jb_init_ms": init_ms, "jb_min_prefetch_ms": min_prefetch_ms, "jb_max_prefetch_ms": max_prefetch_ms,
             "jb_max_ms": max_ms}
    for name, v in given.items():
        if v != -1 and v < max(CODEC_FRAMES_MS) and not (name == "jb_init_ms" and v == 0):
            return f"{name} = {v}: -1 (pjsua's default) or at least {max(CODEC_FRAMES_MS)} ms" + (
                ", or 0 (no initial prefetch)" if name == "jb_init_ms" else "")
    for frame in CODEC_FRAMES_MS:
        held = -(-(max_ms if max_ms != -1 else PJSUA_JB_MAX_MS) // frame)
        hi = max_prefetch_ms // frame if max_prefetch_ms != -1 else max(1, held * 4 // 5)
        lo = min_prefetch_ms // frame if min_prefetch_ms != -1 else 1
        init = init_ms // frame if init_ms != -1 else 0
        if hi > held:
            return f"jb_max_prefetch_ms ({max_prefetch_ms}) must not exceed what the buffer holds ({held * frame} ms)"
        if lo > hi:
            return f"jb_min_prefetch_ms ({min_prefetch_ms}) must not exceed the maximum prefetch ({hi * frame} ms)"
        if init > hi:
            return f"jb_init_ms ({init_ms}) must not exceed the maximum prefetch ({hi * frame} ms)"
    return None


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
    rtp_port_base: int = 20000  # worker i uses rtp_port_base + rtp_ports_per_worker*i .. +span-1
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
    rtp_ports_per_worker: int = RTP_PORTS_PER_WORKER
    # Liveness: every heartbeat_interval_s the gateway pings each worker over its IPC; a worker
    # whose main loop has said nothing for heartbeat_deadline_s is killed and restarted.
    heartbeat_interval_s: float = 1.0
    heartbeat_deadline_s: float = 6.0
    # Capacity (sip/admission.py): call slots of all workers that inbound calls never take, kept
    # for call.dial; unanswered inbound calls one source address may hold (0: no limit). Enforced
    # by the Kamailio front when there is one, else by the worker that takes the calls.
    dispatch_reserve: int = 2
    max_ringing_per_source: int = 4
    # The jitter buffer of each call's audio stream in the workers (pjsua MediaConfig jbInit,
    # jbMinPre, jbMaxPre, jbMax; ms, -1: pjsua's own default). docs/design.md, "Jitter buffer".
    jb_init_ms: int = JB_DEFAULTS["jb_init_ms"]
    jb_min_prefetch_ms: int = JB_DEFAULTS["jb_min_prefetch_ms"]
    jb_max_prefetch_ms: int = JB_DEFAULTS["jb_max_prefetch_ms"]
    jb_max_ms: int = JB_DEFAULTS["jb_max_ms"]
    # Debug: every this many ms each worker logs its calls' jitter buffers and its threads'
    # scheduling delay (`sip.media_trace`, sip/worker/media_trace.py); 0: off.
    media_trace_ms: int = 0

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
        if self.dispatch_reserve < 0:
            raise ValueError("sip.dispatch_reserve must be >= 0")
        if self.max_ringing_per_source < 0:
            raise ValueError("sip.max_ringing_per_source must be >= 0 (0: no limit)")
        if self.rtp_ports_per_worker < 2:
            raise ValueError("sip.rtp_ports_per_worker must be >= 2 (RTP and RTCP of one call)")
        problem = rtp_range_problem(self.rtp_port_base, self.max_workers, self.rtp_ports_per_worker)
        if problem:
            raise ValueError(f"sip.rtp_port_base: {problem}")
        if not 0 < self.heartbeat_interval_s < self.heartbeat_deadline_s:
            raise ValueError(f"sip.heartbeat_deadline_s ({self.heartbeat_deadline_s}) must be greater than "
                             f"sip.heartbeat_interval_s ({self.heartbeat_interval_s}), both > 0")
        problem = jitter_buffer_problem(self.jb_init_ms, self.jb_min_prefetch_ms, self.jb_max_prefetch_ms,
                                        self.jb_max_ms)
        if problem:
            raise ValueError(f"sip.jb_*: {problem}")
        if self.calls_per_worker * 2 > self.rtp_ports_per_worker:
            raise ValueError(f"sip.calls_per_worker: {self.calls_per_worker} calls need "
                             f"{2 * self.calls_per_worker} RTP ports, a worker has {self.rtp_ports_per_worker}")

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
        """First RTP port of worker `index` (it owns rtp_ports_per_worker ports from there)."""
        return self.rtp_port_base + self.rtp_ports_per_worker * index

    @property
    def max_calls_for_rtp(self) -> int:
        """Calls a worker's RTP range can carry (two ports each)."""
        return self.rtp_ports_per_worker // 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["codecs"] = list(self.codecs)
        return d


def worker_config(cfg: SipConfig, index: int, max_calls: int) -> dict[str, Any]:
    """The config handed to worker `index` (the first message on its stdin, never its argv)."""
    host, port = cfg.worker_address(index)
    # Behind a front (Kamailio or an external proxy) the worker sees the proxy as every call's
    # source: the front limits ringing calls per source there, the worker only without one.
    shares = inbound_shares(cfg.max_workers, max_calls, cfg.dispatch_reserve, spread=cfg.proxied)
    reg = asdict(cfg.registration) if cfg.registration and (index == 0 or not cfg.proxied) else None
    return {
        "index": index,
        "host": host,
        "port": port,
        "public_host": cfg.host,  # the gateway's identity (From) is its public address
        "public_port": cfg.port,
        "rtp_port": cfg.worker_rtp_port(index),
        "rtp_port_range": cfg.rtp_ports_per_worker - 1,  # pjsua: ports rtp_port .. rtp_port+range
        "max_calls": max_calls,
        "inbound_share": shares[index],
        "max_ringing_per_source": 0 if cfg.proxied else cfg.max_ringing_per_source,
        "codecs": list(cfg.codecs),
        "user": cfg.user,
        "display_name": cfg.display_name,
        "registration": reg,
        "log_level": cfg.log_level,
        "audio_queue_frames": cfg.audio_queue_frames,
        "jitter_buffer": {"init_ms": cfg.jb_init_ms, "min_prefetch_ms": cfg.jb_min_prefetch_ms,
                          "max_prefetch_ms": cfg.jb_max_prefetch_ms, "max_ms": cfg.jb_max_ms},
        "media_trace_ms": cfg.media_trace_ms,
    }


def rtp_range_end(rtp_port_base: int, max_workers: int, per_worker: int = RTP_PORTS_PER_WORKER) -> int:
    """The last RTP port the workers may use: rtp_port_base + per_worker*max_workers - 1."""
    return rtp_port_base + per_worker * max_workers - 1


def rtp_range_problem(rtp_port_base: int, max_workers: int, per_worker: int = RTP_PORTS_PER_WORKER) -> str | None:
    """Why the workers' RTP ports do not fit below 65536, or None when they do."""
    end = rtp_range_end(rtp_port_base, max_workers, per_worker)
    if end <= PORT_MAX:
        return None
    return (f"{rtp_port_base} + {per_worker} ports x {max_workers} workers ends at port {end}, "
            f"past {PORT_MAX}; lower sip.rtp_port_base to at most "
            f"{PORT_MAX + 1 - per_worker * max_workers} or sip.max_workers")
