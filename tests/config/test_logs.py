"""gateway.logs: JSON lines, console, contextvars in every event, stdlib routed, level."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from gateway.logs import bound, get_logger, setup_logging, use_json


@pytest.fixture(autouse=True)
def _reset():
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "dispatch-gateway":
            root.removeHandler(h)
    root.setLevel(logging.WARNING)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_with_context_and_stdlib():
    out = io.StringIO()
    setup_logging("info", "json", out)
    log = get_logger("gateway.test")
    structlog.contextvars.bind_contextvars(session_id="s-1")
    with bound(call_id="c-1"):
        log.info("call.answered", sip_code=200)
        logging.getLogger("aiohttp.access").warning("GET %s", "/healthz")
    log.info("after")
    log.debug("hidden")
    events = lines(out)
    assert [e["event"] for e in events] == ["call.answered", "GET /healthz", "after"]
    first, second, third = events
    assert first["session_id"] == "s-1" and first["call_id"] == "c-1"
    assert first["sip_code"] == 200 and first["level"] == "info"
    assert first["timestamp"].endswith("Z") and first["logger"] == "gateway.test"
    assert second["session_id"] == "s-1" and second["call_id"] == "c-1"
    assert second["logger"] == "aiohttp.access" and second["level"] == "warning"
    assert "call_id" not in third and third["session_id"] == "s-1"


def test_level_is_configurable():
    out = io.StringIO()
    setup_logging("WARNING", "json", out)
    get_logger("x").info("no")
    logging.getLogger("y").info("no")
    get_logger("x").warning("yes")
    assert [e["event"] for e in lines(out)] == ["yes"]
    setup_logging("debug", "json", out)  # reconfiguring replaces, does not duplicate handlers
    get_logger("x").debug("dbg")
    assert [e["event"] for e in lines(out)] == ["yes", "dbg"]


def test_exceptions_have_no_locals():
    out = io.StringIO()
    setup_logging("info", "json", out)
    secret = "tok-very-secret"  # noqa: F841  (a local that must not be logged)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger().exception("failed")
    [event] = lines(out)
    assert event["exception"][0]["exc_type"] == "RuntimeError"
    assert "tok-very-secret" not in out.getvalue()


def test_console_on_a_tty_and_auto():
    tty = TTY()
    assert use_json("auto", io.StringIO()) and not use_json("auto", tty)
    assert use_json("json", tty) and not use_json("console", io.StringIO())
    setup_logging("info", "auto", tty)
    with bound(call_id="c-9"):
        get_logger("g").info("call.ringing")
    text = tty.getvalue()
    assert "call.ringing" in text and "c-9" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_bad_arguments():
    with pytest.raises(ValueError):
        setup_logging("loud", "json", io.StringIO())
    with pytest.raises(ValueError):
        setup_logging("info", "xml", io.StringIO())


def test_secrets_are_redacted_by_key_and_by_value_in_json_and_console():
    from gateway.config import load_config
    from gateway.logs import config_secrets

    token, password = "tok-alice-0123456789", "registrar-pw-987"
    config = load_config(None, {}, [
        f'auth.tokens={{ "{token}" = {{ principal = "alice", role = "dispatcher" }} }}',
        "sip.registration.registrar=sip:127.0.0.1:5099", "sip.registration.username=gw",
        f"sip.registration.password={password}", "sms.twilio.auth_token=twilio-real-4242"])
    secrets = config_secrets(config)
    assert {token, password, "twilio-real-4242"} <= set(secrets)
    for fmt, stream in (("json", io.StringIO()), ("console", io.StringIO())):
        setup_logging("info", fmt, stream, secrets=secrets)
        log = get_logger("gateway.test")
        log.info("auth.failed", token="whatever-was-sent", detail=f"hello with {token}")
        log.info("sip.register", registration={"username": "gw", "password": password}, ok=True)
        log.info("sms.webhook", auth_token="x", client_secret="y", headers=[f"Bearer {token}"])
        logging.getLogger("aiohttp.access").warning("GET /?p=%s", password)
        text = stream.getvalue()
        for secret in (token, password, "twilio-real-4242", "whatever-was-sent"):
            assert secret not in text, (fmt, secret, text)
        assert "auth.failed" in text and "sip.register" in text and "GET /?p=" in text
        assert "username" in text and "gw" in text  # only secrets go
    out = io.StringIO()
    setup_logging("info", "json", out, secrets=secrets)
    get_logger("t").info("x", password="p", nested={"a": [{"Auth_Token": "q"}]}, n=3)
    (e,) = lines(out)
    assert e["password"] == "[redacted]" and e["nested"] == {"a": [{"Auth_Token": "[redacted]"}]}
    assert e["n"] == 3
