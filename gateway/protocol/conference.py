"""The `conference.*` methods of protocol v1: params models and their table entries.

A conference belongs to an incident session; its members are SIP calls mixed by the conference
bridge of the one worker that holds them. `conference.add` dials a target into it, or moves a
call already connected (the escalation of a 1:1 call: no new INVITE to the phone), or joins the
console's own audio (`console: true`: a media channel of the calling connection).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .methods import COMMAND, READ, Id, IdempotencyKey, MethodSpec, Params, _check_target, _spec


class DialInParams(Params):
    pin: str | None = Field(None, pattern=r"^[0-9]{1,12}$",
                            description="digits a caller types (DTMF) before joining")


class ConferenceCreateParams(Params):
    session_id: Id | None = None
    title: str | None = Field(None, max_length=200)
    record: bool = False
    dial_in: DialInParams | None = Field(None, description="give the conference a number callers dial to join")
    idempotency_key: IdempotencyKey | None = None


class ConferenceAddParams(Params):
    conference_id: Id
    target: str | None = Field(None, description="sip:/sips:/tel: URI or a directory name, dialled in")
    call_id: Id | None = Field(None, description="a connected call of the same worker, moved in")
    console: bool = Field(False, description="the calling console's own audio, on a media channel of "
                                             "this connection (its microphone in, the mix minus itself out)")
    rate: Literal[8000, 16000] = Field(16000, description="console: the media channel's sample rate")
    terminal_id: Id | None = Field(None, description="a field terminal's microphone, through its voice bridge")
    chair: bool = False
    idempotency_key: IdempotencyKey | None = None

    @field_validator("target")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        return None if v is None else _check_target(v)

    @model_validator(mode="after")
    def _one_of(self) -> "ConferenceAddParams":
        if [self.target is not None, self.call_id is not None, self.console,
                self.terminal_id is not None].count(True) != 1:
            raise ValueError("give exactly one of target, call_id, console: true, terminal_id")
        return self


class ConferenceMemberParams(Params):
    conference_id: Id
    member_id: Id


class ConferenceMuteParams(Params):
    conference_id: Id
    member_id: Id | None = None
    all_but_chair: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> "ConferenceMuteParams":
        if (self.member_id is not None) != self.all_but_chair:
            return self
        raise ValueError("give member_id, or all_but_chair: true")


class ConferenceIdParams(Params):
    conference_id: Id


class ConferenceListParams(Params):
    session_id: Id | None = None


CONFERENCE_METHODS: tuple[MethodSpec, ...] = (
    _spec("conference.create", COMMAND, ConferenceCreateParams, True,
          "open a conference in an incident session"),
    _spec("conference.add", COMMAND, ConferenceAddParams, True,
          "dial a target into a conference, move a connected call in, or join the console's audio"),
    _spec("conference.remove", COMMAND, ConferenceMemberParams,
          summary="kick a member: its call is hung up", runs_to_end=True),
    _spec("conference.mute", COMMAND, ConferenceMuteParams,
          summary="nobody hears the member (or all but the chair)", runs_to_end=True),
    _spec("conference.unmute", COMMAND, ConferenceMuteParams,
          summary="the member is heard again (or all but the chair)", runs_to_end=True),
    _spec("conference.end", COMMAND, ConferenceIdParams,
          summary="end the conference: every member's call is hung up", runs_to_end=True),
    _spec("conference.get", READ, ConferenceIdParams, summary="a conference and its members"),
    _spec("conference.list", READ, ConferenceListParams,
          summary="the conferences not ended (of one session), oldest first, with their members"),
)
