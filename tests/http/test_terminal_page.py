"""The pure parts of gateway/terminal_page.py: where the page is told the control channel is,
and the headers of every /terminal response (no socket)."""

from __future__ import annotations

import pytest

from gateway.terminal_page import PageConfig, control_url, security_headers

CFG = PageConfig(control_path="/v1/control", control_tls=False, control_url=None,
                 heartbeat_interval_s=10, report_interval_s=5)


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1:8080", "ws://127.0.0.1:8765/v1/control"),  # the page's port is dropped
    ("gw.example.org", "ws://gw.example.org:8765/v1/control"),
    ("[::1]:8080", "ws://[::1]:8765/v1/control"),
    ("evil.org\r\nX: 1", None),  # never into a header
    ("a b", None),
    ("", None),
])
def test_control_url_follows_the_host_the_browser_used(host: str, url: str | None) -> None:
    assert control_url(CFG, 8765, host) == url


def test_control_url_tls_and_configured() -> None:
    assert control_url(PageConfig("/v1/control", True, None, 10, 5), 443, "gw") == "wss://gw:443/v1/control"
    proxied = PageConfig("/v1/control", False, "wss://edge.example.org/dispatch/control", 10, 5)
    assert control_url(proxied, 8765, "127.0.0.1:8080") == "wss://edge.example.org/dispatch/control"


def test_csp_names_no_origin_but_this_one_and_the_control_channel() -> None:
    h = security_headers("wss://edge.example.org/dispatch/control")
    csp = dict(d.strip().split(" ", 1) for d in h["Content-Security-Policy"].split(";"))
    assert csp["connect-src"] == "'self' wss://edge.example.org"
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert "unsafe" not in h["Content-Security-Policy"] and "http" not in h["Content-Security-Policy"]
    assert security_headers(None)["Content-Security-Policy"].count("connect-src 'self';") == 1
    assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"
    assert h["Permissions-Policy"] == "geolocation=(self), camera=(self), microphone=(self)"
