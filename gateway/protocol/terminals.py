"""The `terminal.*` methods of protocol v1: params models and their table entries.

Positions are WGS-84 (lat -90..90, lon -180..180, degrees); times are ISO 8601 with a zone (`Z` or
`+hh:mm`), refused when more than `FUTURE_SKEW_S` ahead of the gateway's clock or older than
`MAX_AGE_S` (a terminal's buffered fixes may be hours old, not weeks). Every refusal is an
`invalid-params` error naming the field (`loc`), checked before anything is stored.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.timeutil import epoch_to_iso

from .methods import COMMAND, READ, TERMINAL, Id, IdempotencyKey, MethodSpec, Params, _spec

FUTURE_SKEW_S = 30.0  # a fix this far ahead of our clock is refused (clocks disagree a little)
MAX_AGE_S = 7 * 86400.0  # a fix older than this is refused
TRACK_LIMIT = 1000  # terminal.track default page


def _time(value: str) -> str:
    """An ISO 8601 time with a zone, returned in the gateway's format (UTC, ms, Z)."""
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PydanticCustomError("invalid_time", "not an ISO 8601 time: {value}",
                                  {"value": value[:40]}) from None
    if when.tzinfo is None:
        raise PydanticCustomError("invalid_time", "a time needs a zone (Z or +hh:mm): {value}",
                                  {"value": value[:40]})
    return epoch_to_iso(when.timestamp())


def _fix_time(value: str) -> str:
    iso = _time(value)
    epoch = dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    now = time.time()
    if epoch > now + FUTURE_SKEW_S:
        raise PydanticCustomError(
            "future_time", "time is {ahead} s in the future (at most {skew} s allowed)",
            {"ahead": round(epoch - now, 1), "skew": FUTURE_SKEW_S})
    if epoch < now - MAX_AGE_S:
        raise PydanticCustomError("old_time", "time is older than {days} days",
                                  {"days": int(MAX_AGE_S // 86400)})
    return iso


IsoTime = Annotated[str, Field(min_length=10, max_length=40, description="ISO 8601 with a zone"),
                    AfterValidator(_time)]
FixTime = Annotated[str, Field(min_length=10, max_length=40,
                               description="when the fix was taken: ISO 8601 with a zone, not in the future"),
                    AfterValidator(_fix_time)]


def _finite(lo: float, hi: float, description: str, *, lt: bool = False, optional: bool = False) -> Any:
    bounds = {"ge": lo, ("lt" if lt else "le"): hi}
    if optional:
        return Field(None, allow_inf_nan=False, description=description, **bounds)
    return Field(allow_inf_nan=False, description=description, **bounds)


class TerminalReportParams(Params):
    lat: float = _finite(-90, 90, "latitude, degrees (WGS-84)")
    lon: float = _finite(-180, 180, "longitude, degrees (WGS-84)")
    accuracy_m: float = _finite(0, 100_000, "horizontal accuracy radius, metres")
    time: FixTime
    altitude: float | None = _finite(-1000, 20_000, "metres above the WGS-84 ellipsoid", optional=True)
    speed: float | None = _finite(0, 350, "metres per second", optional=True)
    heading: float | None = _finite(0, 360, "degrees clockwise from true north", lt=True, optional=True)
    battery: float | None = _finite(0, 100, "percent", optional=True)
    status: str | None = Field(None, pattern=r"^[a-z][a-z0-9_\-]{0,31}$",
                               description='e.g. "available", "en-route", "on-scene"')
    terminal_id: Id | None = Field(None, description="the reporting terminal (itself); admins name one")

    def fix(self) -> dict:
        """The stored and published shape of the position (no None values)."""
        return self.model_dump(exclude_none=True, exclude={"terminal_id"})


LIST_PAGE_MAX = 1000  # terminal.list entries per reply at most (220-400 KB: under the 1 MiB frame)
INSTRUCTIONS_PAGE = 100  # terminal.instructions default page


class TerminalListParams(Params):
    group: str | None = Field(None, max_length=64, description="only the terminals of this group")
    limit: int | None = Field(None, ge=1, le=LIST_PAGE_MAX, description="the most terminals in this "
                              "reply (then next_after); absent: all of them, as one reply")
    after: Id | None = Field(None, description="the page after this terminal (a reply's next_after)")


class TerminalInstructionsParams(Params):
    state: Literal["open", "all", "queued", "delivered", "fallback-sms", "acknowledged"] = Field(
        "open", description="open: every one not acknowledged yet")
    limit: int = Field(INSTRUCTIONS_PAGE, ge=1, le=500)
    after: Id | None = Field(None, description="the page after this instruction (a reply's next_after)")
    terminal_id: Id | None = Field(None, description="the terminal (itself); admins name one")


class TerminalTrackParams(Params):
    terminal_id: Id
    since: IsoTime | None = Field(None, description="fixes at or after this time")
    until: IsoTime | None = Field(None, description="fixes at or before this time")
    limit: int = Field(TRACK_LIMIT, ge=1, le=100_000,
                       description="the most points returned (also capped by terminals.track_max_points)")

    @model_validator(mode="after")
    def _order(self) -> "TerminalTrackParams":
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class TerminalInstructParams(Params):
    targets: list[Annotated[str, Field(min_length=1, max_length=70)]] = Field(
        min_length=1, max_length=2000, description="terminal ids and group:NAME (their terminals)")
    text: str = Field(min_length=1, max_length=1000)
    session_id: Id | None = None
    require_ack: bool = Field(True, description="wait for terminal.ack (else delivery is enough)")
    ack_timeout_s: float | None = Field(None, gt=0, le=86400, allow_inf_nan=False,
                                        description="default terminals.ack_timeout_s")
    fallback: Literal["sms", "none"] = Field("sms", description="SMS to the terminal's phone when "
                                             "offline, or silent past ack_timeout_s")
    idempotency_key: IdempotencyKey | None = None

    @field_validator("text")
    @classmethod
    def _visible(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the text is empty")
        return v


class InstructionIdParams(Params):
    instruction_id: Id


class TerminalAckParams(Params):
    instruction_id: Id
    terminal_id: Id | None = Field(None, description="the terminal (itself); admins name one")


INSTRUCTION_NOTIFICATION = "terminal.instruction"  # gateway -> terminal, params: the instruction
TERMINAL_ONLY = frozenset({TERMINAL})
READ_OR_TERMINAL = READ | TERMINAL_ONLY

TERMINAL_METHODS: tuple[MethodSpec, ...] = (
    _spec("terminal.report", TERMINAL_ONLY, TerminalReportParams,
          summary="a terminal's position, battery and status (also a heartbeat)", runs_to_end=True,
          audited="errors"),  # each accepted one is its own record: its row in terminal_track
    _spec("terminal.list", READ, TerminalListParams,
          summary="the roster: presence, last position, battery, current incident"),
    _spec("terminal.track", READ_OR_TERMINAL, TerminalTrackParams,
          summary="a terminal's stored positions between two times (a map trail)"),
    _spec("terminal.instruct", COMMAND, TerminalInstructParams, True,
          "an instruction to terminals, acknowledged, with SMS when the field is silent"),
    _spec("terminal.received", TERMINAL_ONLY, TerminalAckParams, summary="the terminal holds an instruction",
          runs_to_end=True),
    _spec("terminal.ack", TERMINAL_ONLY, TerminalAckParams, summary="the terminal acknowledges an instruction",
          runs_to_end=True),
    _spec("terminal.instruction.get", READ, InstructionIdParams,
          summary="an instruction and its state at each terminal"),
    _spec("terminal.instructions", TERMINAL_ONLY, TerminalInstructionsParams,
          summary="a terminal's own instructions (default: those not acknowledged), in the order given"),
)
