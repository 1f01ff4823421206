"""Safe by default: a listener beyond loopback needs real secrets (checked by `serve` before binding).

Development defaults (generated dev tokens, Twilio's `dev-auth-token`, SMPP's `secret`) are fine while
the control channel (`control.host`) and the http port with the webhooks (`http.host`) bind loopback
only. Once either binds another address, each default secret still in effect is a problem naming its
key; `check_exposure` raises the first as a ConfigError, so `serve` exits before anything starts.
A provider's secret counts only when `sms.provider` uses that provider.

A listener beyond loopback without TLS of its own (`*.tls_cert`) is only warned about
(`log_exposure_warnings`, called by `gateway.app.run`), not refused: TLS is often terminated in front
of the gateway (a reverse proxy, a load balancer, a VPN or a private network), where the gateway
cannot see it, and refusing would force a certificate onto deployments that already have one.
"""

from __future__ import annotations

import ipaddress

import structlog

from gateway.config_schema import SCHEMA, Config
from gateway.errors import ConfigError

log = structlog.get_logger("gateway.exposure")

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; a wildcard or any other name or address is not."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_secrets(config: Config) -> list[tuple[str, str]]:
    """(key, why) for each development secret still in effect."""
    found: list[tuple[str, str]] = []
    if config.auth.generated:
        found.append(("auth.dev_tokens",
                      "development tokens are generated (no [auth.tokens] configured)"))
    sms = config.sms
    twilio_default = SCHEMA["sms"]["twilio"]["auth_token"].default
    if sms.provider == "twilio" and sms.twilio.auth_token == twilio_default:
        found.append(("sms.twilio.auth_token", f"the default {twilio_default!r} is in effect"))
    smpp_default = SCHEMA["sms"]["smpp"]["password"].default
    if sms.provider == "smpp" and sms.smpp.password == smpp_default:
        found.append(("sms.smpp.password", "the default password is in effect"))
    return found


def exposure_problems(config: Config) -> list[str]:
    """One line per default secret in effect while a listener binds beyond loopback; [] when safe."""
    exposed = [f"{key} = {host!r}" for key, host in
               (("control.host", config.control.host), ("http.host", config.http.host))
               if not is_loopback(host)]
    if not exposed:
        return []
    where = " and ".join(exposed)
    return [f"{key}: {why}, but {where} is not loopback: set a real secret or bind 127.0.0.1"
            for key, why in _default_secrets(config)]


def check_exposure(config: Config) -> None:
    """Raise ConfigError naming the first default secret exposed beyond loopback."""
    problems = exposure_problems(config)
    if problems:
        raise ConfigError(config.source, "refusing to start", "; ".join(problems))


def plaintext_exposure(config: Config) -> list[tuple[str, str]]:
    """(key, host) of each listener bound beyond loopback without TLS of its own."""
    return [(f"{section}.tls_cert", cfg.host) for section, cfg in
            (("control", config.control), ("http", config.http))
            if not is_loopback(cfg.host) and cfg.tls_cert is None]


def log_exposure_warnings(config: Config) -> None:
    """At start: each listener beyond loopback in clear text, /metrics kept to loopback clients on
    an http port beyond loopback (no metrics.token), and Twilio's webhook URL left on
    http:// while the http port serves HTTPS (Twilio signs the URL it calls: every webhook would
    be refused 403)."""
    for key, host in plaintext_exposure(config):
        log.warning("gateway.exposed-without-tls", key=key, host=host,
                    hint="set its tls_cert and tls_key, or terminate TLS in front of it")
    if not is_loopback(config.http.host) and not config.metrics.token:
        log.info("gateway.metrics-loopback-only", key="metrics.token", host=config.http.host,
                 hint="/metrics answers loopback clients only: set metrics.token for a remote Prometheus")
    public = config.sms.twilio.public_url
    if config.sms.provider == "twilio" and config.http.tls_cert and public.startswith("http://"):
        log.warning("gateway.webhook-url-not-https", key="sms.twilio.public_url", url=public,
                    hint="the http port serves HTTPS: Twilio signs the https:// URL it calls")
