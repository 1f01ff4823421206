import pytest

from gateway.broadcast.machine import (
    BROADCAST_MACHINE,
    END_REASON,
    TARGET_MACHINE,
    BroadcastInput,
    BroadcastState,
    RetryPolicy,
    TargetInput,
    TargetState,
)
from gateway.errors import Conflict
from gateway.state.table import InvalidTransition

B, BI = BroadcastState, BroadcastInput
T, TI = TargetState, TargetInput


def run(machine, start, inputs):
    state = start
    for event in inputs:
        state = machine.next(state, event)
    return state


@pytest.mark.parametrize(
    "inputs, end",
    [
        ([BI.CONNECTED, BI.STOP, BI.ALL_ENDED], B.ENDED),
        ([BI.CONNECTED, BI.CONNECTED, BI.MAX_DURATION, BI.ALL_ENDED], B.ENDED),
        ([BI.CONNECTED, BI.REPEATS_DONE, BI.CONNECTED, BI.ALL_ENDED], B.ENDED),
        ([BI.ALL_FAILED], B.ENDED),
        ([BI.ALL_ENDED], B.ENDED),
        ([BI.STOP, BI.STOP, BI.ALL_FAILED], B.ENDED),
        ([BI.MAX_DURATION, BI.REPEATS_DONE, BI.ALL_ENDED], B.ENDED),
        ([BI.CONNECTED, BI.ALL_ENDED], B.ENDED),
        ([BI.CONNECTED], B.ACTIVE),
        ([BI.STOP], B.ENDING),
    ],
)
def test_broadcast_paths(inputs, end):
    assert run(BROADCAST_MACHINE, B.STARTING, inputs) == end


def test_broadcast_every_row_is_reachable_and_every_cell_tested():
    expected = {
        B.STARTING: {BI.CONNECTED: B.ACTIVE, BI.STOP: B.ENDING, BI.MAX_DURATION: B.ENDING,
                     BI.ALL_FAILED: B.ENDED, BI.ALL_ENDED: B.ENDED},
        B.ACTIVE: {BI.CONNECTED: B.ACTIVE, BI.STOP: B.ENDING, BI.MAX_DURATION: B.ENDING,
                   BI.REPEATS_DONE: B.ENDING, BI.ALL_ENDED: B.ENDED},
        B.ENDING: {BI.CONNECTED: B.ENDING, BI.STOP: B.ENDING, BI.MAX_DURATION: B.ENDING,
                   BI.REPEATS_DONE: B.ENDING, BI.ALL_ENDED: B.ENDED, BI.ALL_FAILED: B.ENDED},
        B.ENDED: {},
    }
    for state in B:
        for event in BI:
            if event in expected[state]:
                assert BROADCAST_MACHINE.next(state, event) == expected[state][event]
            else:
                assert not BROADCAST_MACHINE.allows(state, event)
                with pytest.raises(InvalidTransition):
                    BROADCAST_MACHINE.next(state, event)
    assert BROADCAST_MACHINE.is_final(B.ENDED)
    assert set(END_REASON) == set(BI) - {BI.CONNECTED}


@pytest.mark.parametrize(
    "state, event",
    [(B.STARTING, BI.REPEATS_DONE), (B.ACTIVE, BI.ALL_FAILED), (B.ENDED, BI.STOP), (B.ENDED, BI.CONNECTED)],
)
def test_broadcast_refusal_leaves_state_unchanged(state, event):
    current = state
    with pytest.raises(InvalidTransition) as exc:
        current = BROADCAST_MACHINE.next(current, event)
    assert current == state
    assert isinstance(exc.value, Conflict)
    assert exc.value.reason == "invalid-state"
    assert exc.value.details == {"state": state.value, "input": event.value}


TARGET_EXPECTED = {
    T.PENDING: {TI.DIAL: T.RINGING, TI.REFUSED: T.BUSY, TI.PREEMPT: T.PREEMPTED, TI.STOP: T.ENDED},
    T.RINGING: {TI.EARLY: T.RINGING, TI.ANSWERED: T.CONNECTED, TI.FAIL_RETRY: T.RETRYING,
                TI.FAIL_FINAL: T.FAILED, TI.PREEMPT: T.PREEMPTED, TI.STOP: T.ENDED},
    T.CONNECTED: {TI.DISCONNECTED: T.ENDED, TI.PREEMPT: T.PREEMPTED, TI.STOP: T.ENDED},
    T.RETRYING: {TI.DIAL: T.RINGING, TI.PREEMPT: T.PREEMPTED, TI.STOP: T.ENDED},
    T.PREEMPTED: {TI.RESUME: T.RESUMED, TI.STOP: T.ENDED},
    T.RESUMED: {TI.DIAL: T.RINGING, TI.PREEMPT: T.PREEMPTED, TI.STOP: T.ENDED},
    T.BUSY: {},
    T.FAILED: {},
    T.ENDED: {},
}


def test_target_table_every_cell():
    for state in T:
        for event in TI:
            if event in TARGET_EXPECTED[state]:
                assert TARGET_MACHINE.next(state, event) == TARGET_EXPECTED[state][event]
            else:
                with pytest.raises(InvalidTransition):
                    TARGET_MACHINE.next(state, event)
    assert {s for s in T if TARGET_MACHINE.is_final(s)} == {T.BUSY, T.FAILED, T.ENDED}


@pytest.mark.parametrize(
    "inputs, end",
    [
        ([TI.DIAL, TI.EARLY, TI.ANSWERED, TI.DISCONNECTED], T.ENDED),
        ([TI.DIAL, TI.ANSWERED, TI.STOP], T.ENDED),
        ([TI.REFUSED], T.BUSY),
        ([TI.DIAL, TI.FAIL_RETRY, TI.DIAL, TI.FAIL_RETRY, TI.DIAL, TI.FAIL_FINAL], T.FAILED),
        ([TI.DIAL, TI.FAIL_RETRY, TI.DIAL, TI.ANSWERED], T.CONNECTED),
        ([TI.DIAL, TI.ANSWERED, TI.PREEMPT, TI.RESUME, TI.DIAL, TI.ANSWERED], T.CONNECTED),
        ([TI.DIAL, TI.ANSWERED, TI.PREEMPT, TI.STOP], T.ENDED),  # policy "end"
        ([TI.PREEMPT, TI.RESUME, TI.PREEMPT, TI.RESUME, TI.STOP], T.ENDED),  # chain of pre-emptions
        ([TI.DIAL, TI.FAIL_RETRY, TI.PREEMPT], T.PREEMPTED),
        ([TI.DIAL, TI.FAIL_RETRY, TI.STOP], T.ENDED),
    ],
)
def test_target_paths(inputs, end):
    assert run(TARGET_MACHINE, T.PENDING, inputs) == end


@pytest.mark.parametrize(
    "state, event",
    [(T.PENDING, TI.ANSWERED), (T.CONNECTED, TI.DIAL), (T.PREEMPTED, TI.DIAL), (T.BUSY, TI.DIAL),
     (T.FAILED, TI.DIAL), (T.ENDED, TI.RESUME), (T.CONNECTED, TI.REFUSED)],
)
def test_target_refusal_leaves_state_unchanged(state, event):
    current = state
    with pytest.raises(InvalidTransition):
        current = TARGET_MACHINE.next(current, event)
    assert current == state


@pytest.mark.parametrize("code", [408, 480, 486, 500, 503, 504, 600])
def test_retry_codes(code):
    p = RetryPolicy(retries=2, delay_s=3)
    assert p.decide(1, code).retry and p.decide(1, code).delay_s == 3.0
    assert p.decide(2, code).retry
    last = p.decide(3, code)
    assert not last.retry and last.why == "retries-exhausted"
    assert p.input_for(2, code) == TI.FAIL_RETRY
    assert p.input_for(3, code) == TI.FAIL_FINAL


@pytest.mark.parametrize("code", [403, 404, 410, 484, 487, 488, 603, 606])
def test_fail_at_once_codes(code):
    d = RetryPolicy(retries=5).decide(1, code)
    assert not d.retry and d.why == "not-retryable" and d.delay_s == 0


@pytest.mark.parametrize("cause, retry", [("timeout", True), ("unreachable", True), ("busy", True),
                                          ("no-answer", True), ("invalid-uri", False),
                                          ("cancelled", False), (None, False)])
def test_retry_by_cause(cause, retry):
    assert RetryPolicy().decide(1, None, cause).retry is retry


def test_code_decides_over_cause():
    assert not RetryPolicy().decide(1, 404, "timeout").retry
    assert RetryPolicy().decide(1, 503, "rejected").retry


def test_zero_retries_and_validation():
    assert not RetryPolicy(retries=0).decide(1, 503).retry
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(delay_s=-0.5)
    with pytest.raises(ValueError):
        RetryPolicy().decide(0, 503)


def test_retry_loop_drives_the_target_table():
    """N retries: N+1 INVITEs, then failed for good."""
    policy, state, attempts = RetryPolicy(retries=2), T.PENDING, 0
    while not TARGET_MACHINE.is_final(state):
        state = TARGET_MACHINE.next(state, TI.DIAL)
        attempts += 1
        state = TARGET_MACHINE.next(state, policy.input_for(attempts, 480))
    assert state == T.FAILED and attempts == 3
