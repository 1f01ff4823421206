"""`control.tls_*` / `http.tls_*`: checked when the config loads, each problem naming its key
(issue 8 §1), and a listener beyond loopback without TLS is warned about, not refused."""

from __future__ import annotations

import ssl

import pytest
import structlog.testing

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.exposure import exposure_problems, log_exposure_warnings, plaintext_exposure
from gateway.tls import server_context
from tests.peers.certs import Certs, make_certs

TOKENS = 'auth.tokens={ "tok-alice-1234567890" = { principal = "alice", role = "dispatcher" } }'


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def error(*overrides: str, env: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config(None, env or {}, list(overrides))
    return ei.value


@pytest.mark.parametrize("section", ["control", "http"])
def test_a_good_pair_loads_and_serves(certs, section):
    config = load_config(None, {}, [f"{section}.tls_cert={certs.cert}", f"{section}.tls_key={certs.key}"])
    assert getattr(config, section).tls_cert == certs.cert
    assert isinstance(server_context(certs.cert, certs.key), ssl.SSLContext)


@pytest.mark.parametrize("section", ["control", "http"])
def test_problems_name_the_key(certs, section, tmp_path):
    cert, key = f"{section}.tls_cert", f"{section}.tls_key"
    e = error(f"{cert}={certs.cert}")
    assert (e.key, e.file) == (key, "command line") and "required" in e.why and cert in e.why
    e = error(f"{key}={certs.key}")
    assert e.key == cert and "required" in e.why
    missing = str(tmp_path / "nope.pem")
    e = error(f"{cert}={missing}", f"{key}={certs.key}")
    assert e.key == cert and e.why.startswith("file not found") and missing in e.why
    e = error(f"{cert}={certs.cert}", f"{key}={tmp_path}")  # a directory cannot be read as a key
    assert e.key == key and e.why.startswith("cannot be read")
    e = error(f"{cert}={certs.key}", f"{key}={certs.key}")
    assert e.key == cert and "not a PEM certificate" in e.why
    e = error(f"{cert}={certs.cert}", f"{key}={certs.other_key}")
    assert e.key == key and "does not match the certificate" in e.why and cert in e.why
    e = error(f"{cert}={certs.cert}", f"{key}={certs.cert}")
    assert e.key == key and "not a PEM private key" in e.why


def test_environment_errors_name_the_variable(certs):
    var = "DISPATCH_GATEWAY__HTTP__TLS_KEY"
    e = error(env={"DISPATCH_GATEWAY__HTTP__TLS_CERT": certs.cert, var: certs.other_key})
    assert (e.file, e.key) == ("environment", var) and "does not match" in e.why


def test_beyond_loopback_without_tls_is_a_warning_not_a_refusal(certs):
    config = load_config(None, {}, ["control.host=0.0.0.0", "http.host=192.0.2.10", TOKENS])
    assert exposure_problems(config) == []  # real secrets: it starts
    assert plaintext_exposure(config) == [("control.tls_cert", "0.0.0.0"), ("http.tls_cert", "192.0.2.10")]
    config = load_config(None, {}, ["control.host=0.0.0.0", f"control.tls_cert={certs.cert}",
                                    f"control.tls_key={certs.key}", TOKENS])
    assert plaintext_exposure(config) == []
    assert plaintext_exposure(load_config(None, {}, [])) == []  # loopback: nothing to say


def test_exposure_warnings_are_logged_naming_the_key(certs):
    config = load_config(None, {}, ["control.host=0.0.0.0", TOKENS, "sms.provider=twilio",
                                    "sms.twilio.auth_token=a-real-token-from-the-console",
                                    f"http.tls_cert={certs.cert}", f"http.tls_key={certs.key}"])
    with structlog.testing.capture_logs() as logs:
        log_exposure_warnings(config)
    assert [(e["event"], e["key"]) for e in logs] == [
        ("gateway.exposed-without-tls", "control.tls_cert"),
        ("gateway.webhook-url-not-https", "sms.twilio.public_url")]  # still the http:// default
    with structlog.testing.capture_logs() as logs:
        log_exposure_warnings(load_config(None, {}, []))
    assert logs == []
