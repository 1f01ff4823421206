"""`terminal.feedback` of protocol v1: text and uploads (photos, audio clips) from a terminal into
an incident. The uploads themselves travel over HTTP (`POST /v1/uploads`, docs/protocol.md);
here they are named by the SHA-256 that upload answered."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .methods import TERMINAL, Id, IdempotencyKey, MethodSpec, Params, _spec

MAX_TEXT = 4000
MAX_UPLOADS = 10

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$",
                              description="an upload's id: its SHA-256, 64 lowercase hex digits")]


class TerminalFeedbackParams(Params):
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="what the responder says")
    uploads: list[Sha256] = Field(default_factory=list, max_length=MAX_UPLOADS,
                                  description="uploads of this principal (POST /v1/uploads), in order")
    session_id: Id | None = Field(None, description="the incident; default: the terminal's current one")
    terminal_id: Id | None = Field(None, description="the posting terminal (itself); admins name one")
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _something(self) -> "TerminalFeedbackParams":
        if self.text is None and not self.uploads:
            raise ValueError("give text, uploads or both")
        if len(set(self.uploads)) != len(self.uploads):
            raise ValueError("an upload is named twice")
        return self


FEEDBACK_METHODS: tuple[MethodSpec, ...] = (
    _spec("terminal.feedback", {TERMINAL}, TerminalFeedbackParams, True,
          "text, photos and audio clips from a terminal into an incident"),
)
