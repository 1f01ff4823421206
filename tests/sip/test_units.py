"""Pure parts of the worker and config (no processes)."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from sip.config import RTP_PORTS_PER_WORKER, SipConfig, rtp_range_end, rtp_range_problem, worker_config
from sip.worker.causes import normalize_cause


@pytest.mark.parametrize(
    ("kw", "cause"),
    [
        ({"code": 200, "confirmed": True, "local_end": None}, "remote-hangup"),
        ({"code": 200, "confirmed": True, "local_end": "hangup"}, "local-hangup"),
        ({"code": 486, "confirmed": False, "local_end": None}, "busy"),
        ({"code": 600, "confirmed": False, "local_end": None}, "busy"),
        ({"code": 487, "confirmed": False, "local_end": "hangup"}, "cancelled"),
        ({"code": 487, "confirmed": False, "local_end": "timeout"}, "no-answer"),
        ({"code": 408, "confirmed": False, "local_end": None, "got_response": True}, "no-answer"),
        ({"code": 408, "confirmed": False, "local_end": None}, "unreachable"),
        ({"code": 503, "confirmed": False, "local_end": None}, "unreachable"),
        ({"code": 603, "confirmed": False, "local_end": None}, "rejected"),
        ({"code": 404, "confirmed": False, "local_end": None}, "rejected"),
    ],
)
def test_normalize_cause(kw: dict, cause: str) -> None:
    args = {"outbound": True, "got_response": False, **kw}
    assert normalize_cause(**args) == cause


def test_worker_addresses() -> None:
    cfg = SipConfig(port=5060, worker_base_port=5070, max_workers=3)
    assert cfg.proxied
    assert [cfg.worker_address(i) for i in range(3)] == [("127.0.0.1", 5070), ("127.0.0.1", 5080), ("127.0.0.1", 5090)]
    single = SipConfig(port=5060, max_workers=1)
    assert not single.proxied and single.worker_address(0) == ("127.0.0.1", 5060)
    none = SipConfig(port=5060, proxy="none", max_workers=2)
    assert none.worker_address(0) == ("127.0.0.1", 5060)
    wc = worker_config(cfg, 1, 4)
    assert (wc["host"], wc["port"], wc["rtp_port"], wc["max_calls"]) == ("127.0.0.1", 5080, 20100, 4)
    assert wc["rtp_port_range"] == 99


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SipConfig(proxy="bogus")
    with pytest.raises(ValueError):
        SipConfig(max_workers=2, warm_workers=3)
    cfg = SipConfig(codecs=["PCMU"], registration={"registrar": "sip:r", "username": "u", "password": "p"})
    assert cfg.codecs == ("PCMU",) and cfg.registration is not None and cfg.registration.expires == 300


def test_rtp_ranges_of_workers_do_not_overlap_and_fit() -> None:
    cfg = SipConfig(max_workers=64, warm_workers=1)
    assert RTP_PORTS_PER_WORKER == cfg.rtp_ports_per_worker == 100
    starts = [cfg.worker_rtp_port(i) for i in range(64)]
    assert starts[:3] == [20000, 20100, 20200] and starts[-1] == 26300
    ranges = [range(p, p + worker_config(cfg, i, 4)["rtp_port_range"] + 1) for i, p in enumerate(starts)]
    assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:]))
    assert ranges[-1].stop - 1 == rtp_range_end(20000, 64) == 26399 <= 65535
    assert cfg.max_calls_for_rtp == 50


@pytest.mark.parametrize(("base", "workers", "ok"), [
    (20000, 64, True), (59136, 64, True), (59137, 64, False), (65436, 1, True), (65437, 1, False),
    (60000, 64, False),
])
def test_rtp_range_arithmetic(base: int, workers: int, ok: bool) -> None:
    problem = rtp_range_problem(base, workers)
    assert (problem is None) == ok
    if not ok:
        assert str(base) in problem and str(workers) in problem and str(rtp_range_end(base, workers)) in problem
        with pytest.raises(ValueError, match="rtp_port_base"):
            SipConfig(rtp_port_base=base, max_workers=workers, warm_workers=1)


def test_rtp_port_overflow_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides=["sip.rtp_port_base=60000", "sip.max_workers=64"])
    msg = str(err.value)
    assert "sip.rtp_port_base" in msg
    assert "60000" in msg and "64" in msg and "66399" in msg and "59136" in msg
    assert load_config(None, overrides=["sip.rtp_port_base=59136", "sip.max_workers=64"]).sip.max_workers == 64


def test_calls_per_worker_must_fit_the_rtp_range() -> None:
    with pytest.raises(ValueError, match="calls_per_worker"):
        SipConfig(calls_per_worker=51)
    assert SipConfig(calls_per_worker=50).calls_per_worker == 50


def test_releasing_an_empty_graveyard_asks_no_live_call_for_its_slot() -> None:
    """Every dial releases the graveyard first (sip/worker/commands.py). It used to collect the
    pjsua slot of every live call each time, even with nothing to release: a fan-out of 500
    dials made 125,000 getId calls on the worker's one thread (docs/benchmarks.md)."""
    from types import SimpleNamespace

    from sip.worker.calls import CallLifecycle

    asked = []

    class Live:
        def getId(self) -> int:
            asked.append(self)
            return 7

    worker = SimpleNamespace(graveyard=[], calls={str(i): Live() for i in range(500)}, refused={})
    CallLifecycle._release_graveyard(worker)  # type: ignore[arg-type]
    assert asked == []


def test_jitter_buffer_settings_pjmedia_would_refuse_are_refused() -> None:
    # pjmedia's set_adaptive asserts (and, unchecked, aborts a build with assertions) on these
    for bad in ({"jb_max_ms": 10}, {"jb_init_ms": 5}, {"jb_max_ms": 100, "jb_max_prefetch_ms": 120},
                {"jb_min_prefetch_ms": 100, "jb_max_prefetch_ms": 60}, {"jb_init_ms": 80, "jb_max_prefetch_ms": 60},
                {"jb_max_ms": 100, "jb_min_prefetch_ms": 120},
                {"jb_max_ms": 110, "jb_max_prefetch_ms": 120}):  # 120 fits 6 frames of 20 ms, not 11 of 10
        with pytest.raises(ValueError, match="sip.jb_"):
            SipConfig(**bad)
    for fine in ({}, {"jb_init_ms": 0}, {"jb_max_ms": 500, "jb_max_prefetch_ms": 400},
                 {"jb_max_ms": 110, "jb_max_prefetch_ms": 100}, {"jb_max_ms": 100, "jb_max_prefetch_ms": 100},
                 {"jb_init_ms": -1, "jb_min_prefetch_ms": -1, "jb_max_prefetch_ms": -1, "jb_max_ms": -1}):
        SipConfig(**fine)
    wc = worker_config(SipConfig(jb_max_ms=200, jb_init_ms=0, media_trace_ms=100), 0, 4)
    assert wc["jitter_buffer"]["max_ms"] == 200 and wc["jitter_buffer"]["init_ms"] == 0
    assert wc["media_trace_ms"] == 100


def test_jitter_buffer_settings_from_the_config_file(tmp_path) -> None:
    p = tmp_path / "gw.toml"
    p.write_text("[sip]\njb_max_ms = 15\n")
    with pytest.raises(ConfigError, match="jb_max_ms"):
        load_config(str(p), {}, [])
    p.write_text("[sip]\njb_max_ms = 160\nmedia_trace_ms = 100\n")
    c = load_config(str(p), {}, [])
    assert (c.sip.jb_max_ms, c.sip.media_trace_ms) == (160, 100)
