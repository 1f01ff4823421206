"""One call leg as the gateway sees it, outbound or inbound.

Inputs are either commands from a dispatcher (DIAL, ANSWER, REJECT, HANGUP, HOLD, UNHOLD,
TRANSFER) or what the SIP side reported (INCOMING, EARLY, CONFIRMED, DISCONNECTED, TIMEOUT).
A command that has no entry in the current state is refused with `invalid-state` and changes nothing.
"""

from __future__ import annotations

import enum

from gateway.state.table import Machine


class CallState(enum.StrEnum):
    IDLE = "idle"
    DIALING = "dialing"  # INVITE sent, nothing back yet
    RINGING = "ringing"  # outbound: 18x received; inbound: announced, waiting for a dispatcher
    ANSWERING = "answering"  # inbound: 200 OK sent, waiting for ACK
    CONNECTED = "connected"
    HELD = "held"
    ENDING = "ending"  # we asked to end (BYE / CANCEL / final response sent)
    ENDED = "ended"


class CallInput(enum.StrEnum):
    DIAL = "dial"
    INCOMING = "incoming"
    EARLY = "early"
    CONFIRMED = "confirmed"
    ANSWER = "answer"
    REJECT = "reject"
    HANGUP = "hangup"
    HOLD = "hold"
    UNHOLD = "unhold"
    TRANSFER = "transfer"
    DTMF = "dtmf"
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"


S, I = CallState, CallInput  # noqa: E741

# Every live state can end: by our command or by the far end / the worker.
_ENDS = {I.HANGUP: S.ENDING, I.DISCONNECTED: S.ENDED}

CALL_MACHINE: Machine[CallState, CallInput] = Machine(
    "call",
    {
        S.IDLE: {I.DIAL: S.DIALING, I.INCOMING: S.RINGING},
        S.DIALING: {I.EARLY: S.RINGING, I.CONFIRMED: S.CONNECTED, I.TIMEOUT: S.ENDING, **_ENDS},
        S.RINGING: {
            I.EARLY: S.RINGING,
            I.ANSWER: S.ANSWERING,
            I.REJECT: S.ENDING,
            I.CONFIRMED: S.CONNECTED,
            I.TIMEOUT: S.ENDING,
            **_ENDS,
        },
        S.ANSWERING: {I.CONFIRMED: S.CONNECTED, **_ENDS},
        S.CONNECTED: {
            I.CONFIRMED: S.CONNECTED,
            I.HOLD: S.HELD,
            I.TRANSFER: S.CONNECTED,
            I.DTMF: S.CONNECTED,
            **_ENDS,
        },
        S.HELD: {I.CONFIRMED: S.HELD, I.UNHOLD: S.CONNECTED, I.TRANSFER: S.HELD, **_ENDS},
        S.ENDING: {I.HANGUP: S.ENDING, I.EARLY: S.ENDING, I.CONFIRMED: S.ENDING,
                   I.TIMEOUT: S.ENDING, I.DISCONNECTED: S.ENDED},
        S.ENDED: {},
    },
    final=frozenset({S.ENDED}),
)

# Which SIP-side states map to which input (pjsua2 invite-session states, lower-cased).
SIP_STATE_INPUT: dict[str, CallInput] = {
    "early": CallInput.EARLY,
    "connecting": CallInput.EARLY,
    "confirmed": CallInput.CONFIRMED,
    "disconnected": CallInput.DISCONNECTED,
}
