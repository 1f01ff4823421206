"""Logging: structlog events, JSON lines in production, a readable console on a tty.

`setup_logging(level, fmt)` once at start (from `config.gateway`). Context such as `session_id` and
`call_id` is bound with `structlog.contextvars.bind_contextvars(...)` (or the `bound(...)` context
manager) and then appears in every event logged in that task. Records of the standard `logging`
module (aiohttp, websockets, asyncio) go through the same renderer.

Log events, not sentences: `log.info("call.answered", sip_code=200)`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
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


def setup_logging(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (tests, reload)."""
    stream = stream if stream is not None else sys.stderr
    lvl = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if lvl is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if use_json(fmt, stream):
        renderer: Any = structlog.processors.JSONRenderer()
        # no local variables in tracebacks: they may hold tokens or passwords
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        final = [tracebacks, renderer]
    else:
        final = [structlog.dev.ConsoleRenderer(colors=_colors(stream))]

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
