import random

import pytest

from sms.errors import InvalidNumber, InvalidReceipt, InvalidState, NotDue, SmsError, TooManySegments
from sms.outbox import (
    MESSAGE_MACHINE,
    MessageInput,
    MessageState,
    OutgoingMessage,
    RetryPolicy,
    SenderRates,
    TokenBucket,
    classify,
)

S, I = MessageState, MessageInput
ZH = "所有区值班人员到防汛指挥部报到"
POLICY = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=30.0)


class FixedRandom:
    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


# --- the table ---------------------------------------------------------------------------------

ALLOWED = {
    (S.QUEUED, I.SEND): S.SENDING,
    (S.QUEUED, I.ACCEPTED): S.SENT,  # the provider lists a timed-out attempt as taken
    (S.QUEUED, I.DELIVERED): S.DELIVERED,
    (S.QUEUED, I.UNDELIVERED): S.UNDELIVERED,
    (S.QUEUED, I.FAILED): S.FAILED,
    (S.QUEUED, I.GIVE_UP): S.FAILED,  # held, its lookup failing until sms.give_up_after_s
    (S.SENDING, I.ACCEPTED): S.SENT,
    (S.SENDING, I.TRANSIENT_ERROR): S.QUEUED,
    (S.SENDING, I.PERMANENT_ERROR): S.FAILED,
    (S.SENDING, I.GIVE_UP): S.FAILED,
    (S.SENDING, I.DELIVERED): S.DELIVERED,
    (S.SENDING, I.UNDELIVERED): S.UNDELIVERED,
    (S.SENDING, I.FAILED): S.FAILED,
    (S.SENT, I.DELIVERED): S.DELIVERED,
    (S.SENT, I.UNDELIVERED): S.UNDELIVERED,
    (S.SENT, I.FAILED): S.FAILED,
    (S.SENT, I.GIVE_UP): S.FAILED,  # no receipt within sms.give_up_after_s
}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(I))
def test_table_is_exactly_this(state, event):
    if (state, event) in ALLOWED:
        assert MESSAGE_MACHINE.next(state, event) is ALLOWED[(state, event)]
    else:
        assert not MESSAGE_MACHINE.allows(state, event)


def test_final_states():
    assert MESSAGE_MACHINE.final == {S.DELIVERED, S.UNDELIVERED, S.FAILED}


# --- the message record ------------------------------------------------------------------------


def new(body=ZH, to="+86 138 0013 8000"):
    return OutgoingMessage.queue("m1", "+8610000000", to, body, now=0.0, max_segments=3)


def test_queue_validates_and_stores_segments():
    msg = new()
    assert msg.to == "+8613800138000"
    assert msg.state is S.QUEUED
    assert (msg.info.encoding, msg.info.segments) == ("UCS-2", 1)
    with pytest.raises(InvalidNumber):
        new(to="13800138000")
    with pytest.raises(TooManySegments):
        new(body="值" * 202)


def test_happy_path():
    msg = new()
    msg.start_attempt(1.0)
    assert msg.state is S.SENDING and msg.attempts == 1
    msg.accepted(1.5, provider_id="SM123")
    assert msg.state is S.SENT and msg.provider_id == "SM123"
    msg.receipt(9.0, "delivered")
    assert msg.state is S.DELIVERED and msg.final and msg.error is None
    assert [(c.before, c.input, c.after) for c in msg.history] == [
        (S.QUEUED, I.SEND, S.SENDING),
        (S.SENDING, I.ACCEPTED, S.SENT),
        (S.SENT, I.DELIVERED, S.DELIVERED),
    ]


@pytest.mark.parametrize("status, state", [("undelivered", S.UNDELIVERED), ("failed", S.FAILED)])
def test_bad_receipts(status, state):
    msg = new()
    msg.start_attempt(0)
    msg.accepted(0)
    msg.receipt(5, status)
    assert msg.state is state
    assert msg.error == {"reason": status, "attempts": 1}


def test_retry_then_success():
    msg = new()
    msg.start_attempt(0)
    change = msg.attempt_failed(1.0, POLICY, FixedRandom(0.5), status_code=503)
    assert msg.state is S.QUEUED and change.after is S.QUEUED
    assert msg.next_attempt_at == pytest.approx(1.5)  # 0.5 * min(30, 1 * 2**0)
    assert not msg.due(1.2)
    with pytest.raises(NotDue) as err:
        msg.start_attempt(1.2)
    assert err.value.reason == "not-due" and msg.state is S.QUEUED
    msg.start_attempt(1.5)
    msg.attempt_failed(2.0, POLICY, FixedRandom(0.5), error=TimeoutError())
    assert msg.next_attempt_at == pytest.approx(3.0)  # 0.5 * 2**1
    msg.start_attempt(3.0)
    msg.accepted(3.1)
    assert msg.state is S.SENT and msg.attempts == 3


def test_retries_exhausted():
    msg = new()
    for now in (0, 100, 200):
        msg.start_attempt(now)
        msg.attempt_failed(now + 1, POLICY, FixedRandom(0.0), status_code=429)
    assert msg.state is S.FAILED
    assert msg.history[-1].input is I.GIVE_UP
    assert msg.error["reason"] == "give-up" and msg.error["attempts"] == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_error_fails_at_once(status):
    msg = new()
    msg.start_attempt(0)
    msg.attempt_failed(1, POLICY, FixedRandom(0.5), status_code=status)
    assert msg.state is S.FAILED and msg.attempts == 1
    assert msg.error["reason"] == "permanent-error" and msg.error["status_code"] == status


def test_retry_after_is_honoured():
    msg = new()
    msg.start_attempt(0)
    msg.attempt_failed(0, POLICY, FixedRandom(0.1), status_code=429, retry_after_s=20)
    assert msg.next_attempt_at == 20


def test_receipt_overtakes_api_reply():
    msg = new()
    msg.start_attempt(0)
    msg.receipt(0.2, "delivered")
    assert msg.state is S.DELIVERED
    late = msg.accepted(0.5, provider_id="SM1")
    assert late.ignored and msg.state is S.DELIVERED and msg.provider_id == "SM1"
    late = msg.attempt_failed(0.6, POLICY, FixedRandom(0.5), error="timeout")
    assert late.ignored and msg.state is S.DELIVERED and msg.error is None


def test_receipt_for_timed_out_attempt_stops_resend():
    msg = new()
    msg.start_attempt(0)
    msg.attempt_failed(10, POLICY, FixedRandom(0.5), error="timeout")
    assert msg.state is S.QUEUED
    msg.receipt(11, "delivered")
    assert msg.state is S.DELIVERED
    with pytest.raises(InvalidState):
        msg.start_attempt(20)


def test_duplicate_and_conflicting_receipts_are_recorded_not_applied():
    msg = new()
    msg.start_attempt(0)
    msg.accepted(0)
    msg.receipt(1, "delivered")
    dup = msg.receipt(2, "delivered")
    late = msg.receipt(3, "failed")
    assert dup.ignored and late.ignored and msg.state is S.DELIVERED and msg.error is None
    assert len(msg.history) == 5


def test_receipt_before_any_attempt_refused():
    msg = new()
    with pytest.raises(InvalidState) as err:
        msg.receipt(0, "delivered")
    assert err.value.reason == "invalid-state" and msg.state is S.QUEUED and msg.history == []


@pytest.mark.parametrize("status", ["sent", "read", "", "DELIVERED", "send", "accepted"])
def test_unknown_receipt_status(status):
    msg = new()
    msg.start_attempt(0)
    with pytest.raises(InvalidReceipt) as err:
        msg.receipt(1, status)
    assert err.value.reason == "invalid-receipt" and msg.state is S.SENDING


def test_refusals_leave_state_unchanged():
    msg = new()
    for call in (lambda: msg.accepted(0), lambda: msg.attempt_failed(0, POLICY, FixedRandom(0), status_code=500)):
        with pytest.raises(InvalidState) as err:
            call()
        assert isinstance(err.value, SmsError)
        assert err.value.details == {"state": "queued", "input": err.value.details["input"]}
        assert msg.state is S.QUEUED and msg.history == []
    msg.start_attempt(0)
    with pytest.raises(InvalidState):
        msg.start_attempt(0)  # already sending
    msg.accepted(0)
    with pytest.raises(InvalidState):
        msg.accepted(1)  # sent twice
    with pytest.raises(InvalidState):
        msg.start_attempt(1)
    assert msg.state is S.SENT


def test_send_after_final_refused():
    msg = new()
    msg.start_attempt(0)
    msg.attempt_failed(0, POLICY, FixedRandom(0), status_code=400)
    with pytest.raises(InvalidState):
        msg.start_attempt(1)
    assert msg.state is S.FAILED


# --- classify ----------------------------------------------------------------------------------


class ClientConnectionError(Exception):  # stands in for aiohttp's, matched by name
    pass


class ServerDisconnectedError(ClientConnectionError):
    pass


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504, 599])
def test_classify_retry_codes(code):
    assert classify(status_code=code) == "retry"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 422, 499])
def test_classify_permanent_codes(code):
    assert classify(status_code=code) == "permanent"


@pytest.mark.parametrize(
    "error",
    [TimeoutError(), ConnectionResetError(), ConnectionRefusedError(), OSError("dns"), ServerDisconnectedError(),
     "timeout", "connection"],
)
def test_classify_retry_errors(error):
    assert classify(error=error) == "retry"


@pytest.mark.parametrize("error", [ValueError("bug"), KeyError("x"), "bad-request"])
def test_classify_permanent_errors(error):
    assert classify(error=error) == "permanent"


@pytest.mark.parametrize("kwargs", [{}, {"status_code": 200}, {"status_code": 302}, {"status_code": 600}])
def test_classify_misuse(kwargs):
    with pytest.raises(ValueError):
        classify(**kwargs)


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_and_caps():
    assert [POLICY.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert POLICY.ceiling(10_000) == 30


def test_backoff_full_jitter_bounds():
    rng = random.Random(7)
    for attempts in range(1, 12):
        delays = [POLICY.delay(attempts, rng) for _ in range(500)]
        assert all(0 <= d < POLICY.ceiling(attempts) for d in delays)
        assert max(delays) > 0.8 * POLICY.ceiling(attempts)  # the whole range is used
        assert min(delays) < 0.2 * POLICY.ceiling(attempts)


def test_backoff_is_deterministic_with_seed():
    a, b = random.Random(1), random.Random(1)
    assert [POLICY.delay(3, a) for _ in range(5)] == [POLICY.delay(3, b) for _ in range(5)]


@pytest.mark.parametrize("args", [(0, 1, 2), (3, 0, 2), (3, 5, 2)])
def test_policy_validation(args):
    with pytest.raises(ValueError):
        RetryPolicy(*args)


def test_policy_can_retry():
    assert POLICY.can_retry(2) and not POLICY.can_retry(3)


# --- rate --------------------------------------------------------------------------------------


def run(bucket, start, end, step=None):
    """Send as fast as allowed in [start, end); return the send times."""
    times, now = [], start
    while True:
        now = bucket.next_send_at(now) if step is None else now
        if now >= end:
            return times
        if bucket.try_take(now):
            times.append(now)
        if step is not None:
            now += step


@pytest.mark.parametrize("rate, burst", [(1, 1), (5, 5), (10, 1), (0.5, 2), (30, 10)])
def test_token_bucket_over_a_simulated_minute(rate, burst):
    times = run(TokenBucket(rate, burst), 0.0, 60.0)
    assert len(times) == pytest.approx(burst + rate * 60, abs=1)
    # no one-second window (after the initial burst) holds more than rate + 1
    later = [t for t in times if t >= burst / rate]
    for i, t in enumerate(later):
        assert sum(1 for u in later[i:] if u < t + 1) <= rate + 1


def test_token_bucket_polled_on_a_coarse_clock():
    times = run(TokenBucket(2, 1), 0.0, 60.0, step=0.01)
    assert 119 <= len(times) <= 121


def test_token_bucket_next_send_at():
    bucket = TokenBucket(2, 2)
    assert bucket.next_send_at(10.0) == 10.0
    assert bucket.try_take(10.0) and bucket.try_take(10.0)
    assert not bucket.try_take(10.0)
    assert bucket.next_send_at(10.0) == pytest.approx(10.5)
    assert bucket.next_send_at(10.2) == pytest.approx(10.5)
    assert bucket.try_take(10.5)
    assert bucket.next_send_at(100.0) == 100.0  # refilled, but only to burst
    assert bucket.try_take(100.0) and bucket.try_take(100.0) and not bucket.try_take(100.0)


def test_token_bucket_clock_going_back_refills_nothing():
    bucket = TokenBucket(1, 1)
    assert bucket.try_take(50.0)
    assert not bucket.try_take(40.0)
    assert bucket.next_send_at(50.5) == pytest.approx(51.0)


@pytest.mark.parametrize("args", [(0, 1), (-1, 1), (1, 0.5)])
def test_token_bucket_validation(args):
    with pytest.raises(ValueError):
        TokenBucket(*args)


def test_sender_rates_are_per_sender():
    rates = SenderRates(1, 1)
    assert rates.try_take("+8610000001", 0.0)
    assert not rates.try_take("+8610000001", 0.0)
    assert rates.try_take("+8610000002", 0.0)
    assert rates.next_send_at("+8610000001", 0.0) == pytest.approx(1.0)


def test_a_step_runs_no_enum_python():
    """The ledger restores a stored message and feeds it one input per step, in the store's
    database thread: the states and inputs hash by identity and are found by value in a dict, so
    no Python of `enum` runs (before: `Enum.__hash__` at every set or table lookup, `EnumType.__call__`
    to restore the state and to read a receipt's status: 10 calls a start and a receipt)."""
    import sys

    files: list[str] = []

    def trace(frame, event, arg):
        if event == "call":
            files.append(frame.f_code.co_filename)

    sys.setprofile(trace)
    try:
        m = OutgoingMessage.restore("m1", "+15005550006", "+8613700000000", "hi", state="queued", attempts=0,
                                    next_attempt_at=None, provider_id=None, created_at=0.0)
        m.start_attempt(1.0)
        m.accepted(2.0, "P1")
        m.receipt(3.0, "delivered")
    finally:
        sys.setprofile(None)
    assert m.state is S.DELIVERED
    assert not [f for f in files if f.endswith("enum.py")], [f for f in files if f.endswith("enum.py")]
    with pytest.raises(ValueError):
        OutgoingMessage.restore("m2", "+1", "+2", "x", state="nonsense", attempts=0, next_attempt_at=None,
                                provider_id=None, created_at=0.0)
    with pytest.raises(InvalidReceipt):
        m.receipt(4.0, "nonsense")
