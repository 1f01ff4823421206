"""Logging: structlog events, JSON lines in production, a readable console on a tty.

`setup_logging(level, fmt)` once at start (from `config.gateway`). Context such as `session_id` and
`call_id` is bound with `structlog.contextvars.bind_contextvars(...)` (or the `bound(...)` context
manager) and then appears in every event logged in that task. Records of the standard `logging`
module (aiohttp, websockets, asyncio) go through the same renderer.

Log events, not sentences: `log.info("call.answered", sip_code=200)`.

Secrets never reach the output: the last step before rendering (`Redactor`) replaces the value of
every key named like a secret (token, password, secret, authorization, at any depth) and every
occurrence of a configured secret (`config_secrets(config)`: tokens, registrar password, provider
secrets) in any string, tracebacks included, with "[redacted]".
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import structlog
import structlog.tracebacks

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("auto", "json", "console")

_HANDLER_NAME = "dispatch-gateway"
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"token|passw|secret|authorization|auth_pass|api_key", re.IGNORECASE)
_MAX_DEPTH = 32


def config_secrets(config: Any) -> tuple[str, ...]:
    """Every secret a loaded Config holds: control tokens, registrar password, SMS provider secrets,
    remote Janus API secrets, the audit export key, the metrics token."""
    found = list(config.auth.tokens)
    if config.sip.registration is not None:
        found.append(config.sip.registration.password)
    found += [config.sms.twilio.auth_token, config.sms.smpp.password]
    found += [r.api_secret for r in getattr(getattr(config, "video", None), "remote", ())]
    found += [config.audit.export_key, config.metrics.token]
    return tuple(s for s in found if s)


class Redactor:
    """structlog processor: secret-named keys and configured secret values become "[redacted]"."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, _logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {k: self._value(k, v, 0) for k, v in event_dict.items()}

    def _value(self, key: Any, v: Any, depth: int) -> Any:
        if isinstance(key, str) and _SECRET_KEY.search(key) and v is not None:
            return REDACTED
        if depth > _MAX_DEPTH:
            return "[too deep]"
        if isinstance(v, str):
            return self._values.sub(REDACTED, v) if self._values is not None else v
        if isinstance(v, dict):
            return {k: self._value(k, x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self._value(None, x, depth + 1) for x in v]
        return v


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def use_json(fmt: str, stream: IO[str]) -> bool:
    """json: always; console: never; auto: JSON unless `stream` is a terminal."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (isatty is not None and isatty())
    return fmt == "json"


def setup_logging(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None,
                  secrets: Iterable[str] = ()) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (tests, reload).
    `secrets` (see config_secrets) are redacted wherever they appear."""
    stream = stream if stream is not None else sys.stderr
    lvl = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if lvl is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    redact = Redactor(secrets)
    if use_json(fmt, stream):
        renderer: Any = structlog.processors.JSONRenderer()
        # no local variables in tracebacks: they may hold tokens or passwords
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        final = [tracebacks, redact, renderer]
    else:  # tracebacks become text first, so that they are redacted too
        final = [structlog.processors.format_exc_info, redact,
                 structlog.dev.ConsoleRenderer(colors=_colors(stream))]

    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)


def _colors(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name, **initial)


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Bind context vars (session_id=..., call_id=...) for the duration of a block."""
    with structlog.contextvars.bound_contextvars(**context):
        yield
