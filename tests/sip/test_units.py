"""Pure parts of the worker and config (no processes)."""

from __future__ import annotations

import pytest

from sip.config import SipConfig, worker_config
from sip.causes import normalize_cause


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
    assert (wc["host"], wc["port"], wc["rtp_port"], wc["max_calls"]) == ("127.0.0.1", 5080, 21000, 4)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SipConfig(proxy="bogus")
    with pytest.raises(ValueError):
        SipConfig(max_workers=2, warm_workers=3)
    cfg = SipConfig(codecs=["PCMU"], registration={"registrar": "sip:r", "username": "u", "password": "p"})
    assert cfg.codecs == ("PCMU",) and cfg.registration is not None and cfg.registration.expires == 300
