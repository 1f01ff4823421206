"""One write that cannot be stored (lone surrogates, values SQLite cannot bind) fails alone:
every other write of the same group commit is committed, and event seqs stay contiguous."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from gateway.errors import InvalidParams
from gateway.store import Store

LONE = "\ud800"  # a valid JSON escape that cannot be encoded as UTF-8


async def test_unencodable_writes_fail_alone_in_one_batch(store: Store) -> None:
    batches: list[list[int]] = []
    store.add_listener(lambda evs: batches.append([e.seq for e in evs]))
    good_sessions = [store.put_session({"session_id": f"ok-{i}", "title": f"t{i}", "state": "open"})
                     for i in range(20)]
    good_events = [store.append_event("t", None, {"i": i}) for i in range(20)]
    bad = [
        store.put_session({"session_id": "bad-title", "title": "x" + LONE, "state": "open"}),
        store.add_audit("mallory", "terminal", "x" + LONE, {}, "error", "unknown-method"),
        store.append_event("t", None, {"text": LONE}),
        store.append_event("t" + LONE, None, {}),
        store.put_call({"call_id": "bad-call", "remote_uri": "sip:" + LONE + "@h"}),
        store.put_session({"session_id": "big", "created_by": 2**70}),  # cannot be bound either
        store.append_event("t", object(), {}),  # an event SQLite refuses: the others are kept
    ]
    with capture_logs() as logs:
        results = await asyncio.gather(*good_sessions, *good_events, *bad, return_exceptions=True)
    good, failed = results[:40], results[40:]
    assert not [r for r in good if isinstance(r, BaseException)], good
    assert all(isinstance(r, Exception) for r in failed), failed
    # A text the store cannot hold is the caller's mistake, with the field named.
    assert all(isinstance(r, InvalidParams) and r.reason == "invalid-text" for r in failed[:5]), failed
    assert not [e for e in logs if e["event"] == "store.commit_failed"]
    for i in range(20):
        assert (await store.get_session(f"ok-{i}"))["title"] == f"t{i}"
    assert await store.get_session("bad-title") is None and await store.get_call("bad-call") is None
    seqs = [e.seq for e in await store.events_after(0)]
    assert seqs == list(range(1, 21))  # no seq taken by a failed event, none skipped
    assert [s for b in batches for s in b] == seqs


async def test_a_failing_statement_after_events_keeps_the_batch(store: Store) -> None:
    """A write that fails inside SQLite (not at binding) is rolled back alone, events kept."""
    await store.put_session({"session_id": "s1", "state": "open"})
    results = await asyncio.gather(
        store.append_event("t", None, {}),
        store.add_audit("p", "r", "m", {}, "ok"),
        store._submit("INSERT INTO audit (time, method, params, result) VALUES ('t', 'm', '{}', 'bogus')", ()),
        store.append_event("t", None, {}),
        return_exceptions=True)
    assert [type(r).__name__ for r in results][2] == "IntegrityError"
    assert [r.seq for r in (results[0], results[3])] == [1, 2]
    assert len(await store.list_audit()) == 1


@pytest.mark.parametrize("value", [LONE, "a\udcffb", {"k" + LONE: 1}, [LONE]])
async def test_event_data_with_lone_surrogates_is_refused_before_the_batch(store: Store, value) -> None:
    with pytest.raises(InvalidParams) as err:
        await store.append_event("t", None, {"v": value})
    assert err.value.reason == "invalid-text"
    assert (await store.append_event("t", None, {"v": "fine"})).seq == 1


def _sms(message_id: str) -> dict:
    return {"message_id": message_id, "send_id": "send-1", "sender": "+1", "recipient": "+2",
            "body": "b", "state": "queued", "attempts": 0, "next_attempt_at": 0,
            "created_at": "2026-01-01T00:00:00.000Z"}


@pytest.mark.parametrize("first", [True, False])
async def test_a_failing_many_write_leaves_none_of_its_rows(store: Store, first: bool) -> None:
    """An executemany that fails on its third row keeps none of its rows, and the rest of the
    batch (before or after it) is committed in the same transaction."""
    bad = store.insert_sms([_sms("m1"), _sms("m2"), _sms("m1")])  # m1 twice: the third row fails
    others = [store.put_session({"session_id": "s", "state": "open"}), store.append_event("t")]
    results = await asyncio.gather(*([bad, *others] if first else [*others, bad]), return_exceptions=True)
    failed = results[0] if first else results[-1]
    assert type(failed).__name__ == "IntegrityError"
    assert await store.get_sms("m1") is None and await store.get_sms("m2") is None
    assert (await store.get_session("s"))["state"] == "open"
    await store.insert_sms([_sms("m3")])
    assert (await store.get_sms("m3"))["state"] == "queued"
