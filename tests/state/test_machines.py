import pytest

from gateway.errors import Conflict
from gateway.state import (
    CALL_MACHINE,
    SESSION_MACHINE,
    CallInput,
    CallState,
    InvalidTransition,
    Machine,
    SessionInput,
    SessionState,
)

S, I = CallState, CallInput


def run(inputs, start=S.IDLE):
    state = start
    for event in inputs:
        state = CALL_MACHINE.next(state, event)
    return state


@pytest.mark.parametrize(
    "inputs, end",
    [
        ([I.DIAL, I.EARLY, I.CONFIRMED, I.HANGUP, I.DISCONNECTED], S.ENDED),
        ([I.DIAL, I.DISCONNECTED], S.ENDED),  # busy / unreachable
        ([I.DIAL, I.EARLY, I.TIMEOUT, I.DISCONNECTED], S.ENDED),  # no answer
        ([I.INCOMING, I.ANSWER, I.CONFIRMED], S.CONNECTED),
        ([I.INCOMING, I.REJECT, I.DISCONNECTED], S.ENDED),
        ([I.INCOMING, I.TIMEOUT, I.DISCONNECTED], S.ENDED),
        ([I.DIAL, I.CONFIRMED, I.HOLD, I.CONFIRMED, I.UNHOLD], S.CONNECTED),
        ([I.DIAL, I.CONFIRMED, I.HOLD, I.DISCONNECTED], S.ENDED),
        ([I.DIAL, I.CONFIRMED, I.TRANSFER, I.DISCONNECTED], S.ENDED),
    ],
)
def test_call_paths(inputs, end):
    assert run(inputs) == end


@pytest.mark.parametrize(
    "state, event",
    [
        (S.DIALING, I.ANSWER),  # cannot answer our own outbound call
        (S.CONNECTED, I.ANSWER),
        (S.CONNECTED, I.REJECT),
        (S.RINGING, I.HOLD),
        (S.HELD, I.HOLD),
        (S.CONNECTED, I.UNHOLD),
        (S.ENDED, I.HANGUP),
        (S.ENDED, I.DISCONNECTED),
        (S.IDLE, I.HANGUP),
        (S.RINGING, I.DTMF),
    ],
)
def test_call_refuses_what_does_not_apply(state, event):
    assert not CALL_MACHINE.allows(state, event)
    with pytest.raises(InvalidTransition) as err:
        CALL_MACHINE.next(state, event)
    assert isinstance(err.value, Conflict)
    assert err.value.reason == "invalid-state"
    assert err.value.details == {"state": state.value, "input": event.value}


def test_every_live_call_state_can_end():
    for state in S:
        if state in (S.IDLE, S.ENDED):
            continue
        assert CALL_MACHINE.next(state, I.DISCONNECTED) == S.ENDED
    assert CALL_MACHINE.is_final(S.ENDED)


def test_session_machine():
    assert SESSION_MACHINE.next(SessionState.OPEN, SessionInput.ATTACH) == SessionState.OPEN
    assert SESSION_MACHINE.next(SessionState.OPEN, SessionInput.CLOSE) == SessionState.CLOSED
    with pytest.raises(InvalidTransition):
        SESSION_MACHINE.next(SessionState.CLOSED, SessionInput.CLOSE)
    with pytest.raises(InvalidTransition):
        SESSION_MACHINE.next(SessionState.CLOSED, SessionInput.ATTACH)


def test_table_is_checked_when_built():
    with pytest.raises(ValueError, match="has no row"):
        Machine("bad", {S.IDLE: {I.DIAL: S.DIALING}}, final=frozenset())
    with pytest.raises(ValueError, match="final state"):
        Machine("bad", {S.ENDED: {I.DIAL: S.ENDED}}, final=frozenset({S.ENDED}))
