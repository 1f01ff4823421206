"""`serve` refuses a non-loopback listener while development secrets are in effect (issue 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.exposure import check_exposure, exposure_problems

REPO = Path(__file__).resolve().parents[2]
TOKENS = ['auth.tokens={ "tok-alice-1234567890" = { principal = "alice", role = "dispatcher" } }']


def problems(*overrides: str) -> list[str]:
    return exposure_problems(load_config(None, {}, list(overrides)))


def test_loopback_keeps_dev_tokens_and_default_secrets() -> None:
    assert problems() == []
    assert problems("control.host=::1", "http.host=localhost", "sms.provider=twilio") == []
    check_exposure(load_config(None, {}, []))


@pytest.mark.parametrize("key", ["control.host", "http.host"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "gateway.example.org"])
def test_non_loopback_with_dev_tokens_is_refused_naming_both_keys(key: str, host: str) -> None:
    found = problems(f"{key}={host}")
    assert len(found) == 1 and key in found[0] and "auth.dev_tokens" in found[0], found
    with pytest.raises(ConfigError) as ei:
        check_exposure(load_config(None, {}, [f"{key}={host}"]))
    assert "auth.dev_tokens" in str(ei.value) and key in str(ei.value)


def test_default_provider_secrets_are_refused_when_that_provider_is_used() -> None:
    twilio = problems("http.host=0.0.0.0", "sms.provider=twilio", *TOKENS)
    assert len(twilio) == 1 and "sms.twilio.auth_token" in twilio[0], twilio
    smpp = problems("control.host=0.0.0.0", "sms.provider=smpp", *TOKENS)
    assert len(smpp) == 1 and "sms.smpp.password" in smpp[0], smpp
    # an unused provider's default secret is no exposure
    assert problems("http.host=0.0.0.0", "sms.provider=none", *TOKENS) == []


def test_real_secrets_pass_the_check() -> None:
    assert problems("control.host=0.0.0.0", "http.host=0.0.0.0", "sms.provider=twilio",
                    "sms.twilio.auth_token=a-real-token-from-the-console", *TOKENS) == []
    assert problems("control.host=0.0.0.0", "sms.provider=smpp", "sms.smpp.password=Sx9-long-one",
                    *TOKENS) == []
    # dev_tokens = false with no tokens: nobody can log in, but nothing is exposed either
    assert problems("control.host=0.0.0.0", "auth.dev_tokens=false") == []


def test_serve_refuses_before_binding_with_a_message_naming_the_key(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--set", "control.host=0.0.0.0",
         "--set", f"gateway.data_dir={tmp_path / 'data'}"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "control.host" in r.stderr and "auth.dev_tokens" in r.stderr, r.stderr
    assert "Development tokens" not in r.stdout  # refused before tokens are printed
    assert not (tmp_path / "data").exists()  # nothing started: no store made


async def test_run_refuses_too_so_no_entry_point_binds_first(tmp_path) -> None:
    import asyncio

    from gateway.app import run

    config = load_config(None, {}, ["http.host=0.0.0.0", f"gateway.data_dir={tmp_path / 'data'}"])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(20, stop.set)  # without the check: it starts, then stops
    with pytest.raises(ConfigError, match="http.host"):
        await run(config, stop)
    assert not (tmp_path / "data").exists()
