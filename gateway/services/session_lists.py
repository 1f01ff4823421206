"""What `session.list` answers: the sessions kept in memory by id, current while every write of
the sessions table that returns is applied to them (issue 13).

The table is written only through `Store.put_session`, which counts the writes that returned
(`Store.sessions_version`). `SessionLists` keeps, while the store holds no more sessions than
a list shows (`LIST_LIMIT`), every session by id with its public dict and JSON text, in the store's
order (created_at, session_id), and the version they are exact for:

- a write made through `SessionService` applies its row here as it returns (`written`, with no
  await since the store's version step): the kept rows move to the next version without a read;
- a read of the store (the first list, or one after a write not applied here: made beside the
  service, failed or cancelled) is kept if every write that returned while it ran was applied
  here: those rows are applied again on top of what the read saw, in the order they returned
  (the writes of one session return in the order they commit, so the last one wins); a write
  still in progress when the read ends applies itself when it returns;
- a list of one state is built from the kept rows once per version: a join of texts already
  encoded, no read; after a create that sorts last (the usual case) the lists built before are
  carried to the new version, the new session's text appended to those it belongs to (no join of
  every row once per create). A read reuses the dict and text of each row it finds unchanged
  (by id).

Before, a list read overlapping a write was answered but not kept, and with a create every 50 ms
most lists read the store again: 9-20 % of the loop's busy time in workload (a), and a trip to
the reader's thread for each list (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from bisect import insort
from typing import Any, NamedTuple

from gateway.protocol.codec import EncodedResult, encode_json
from gateway.state import SessionState
from gateway.store import SESSION_COLUMNS, Store

LIST_LIMIT = 1000  # session.list: the newest 1000, oldest first (the store's order)
_STATES = frozenset(s.value for s in SessionState)


class _Kept(NamedTuple):
    row: tuple  # as `Store.list_session_rows` returns it (SESSION_COLUMNS)
    public: dict[str, Any]
    text: str


class SessionLists:
    """The lists `SessionService.list_result` answers (see above)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._rows: dict[str, _Kept] = {}  # by session_id (exact at `_version`, else a cache)
        self._order: list[tuple[str, str]] = []  # (created_at, session_id) of `_rows`, ascending
        self._version: int | None = None  # the store's version `_rows` are exact for
        self._built: dict[str | None, tuple[int, EncodedResult]] = {}  # state -> (version, list)
        self._reading: list[list[tuple]] = []  # per read in progress: the rows written meanwhile
        self._read_done: asyncio.Event | None = None  # set when the last read begun has ended

    async def result(self, state: str | None) -> EncodedResult:
        """`{"sessions": [...]}` of one state (None: all), the newest LIST_LIMIT oldest first; shared: read-only."""
        while True:
            version = self._store.sessions_version
            built = self._built.get(state)
            if built is not None and built[0] == version:
                return built[1]
            if self._version == version or self._read_done is None:
                break
            await self._read_done.wait()  # the sessions being read may well be kept: one read for all
        if self._version != version:
            read = await self._read(state)
            if read is not None:
                return read
        result = _result([self._rows[sid] for _, sid in self._order], state)
        if state is None or state in _STATES:  # a state no session can have is not kept
            self._built[state] = (self._version, result)  # type: ignore[assignment]
        return result

    def written(self, public: dict[str, Any]) -> None:
        """`Store.put_session` has just returned for this row (public columns), no await since."""
        row = tuple(public[c] for c in SESSION_COLUMNS)
        for log in self._reading:
            log.append(row)
        version = self._store.sessions_version
        if self._version is not None and self._version == version - 1:
            new = row[0] not in self._rows
            if not self._put(row):
                self._version = None
                return
            self._version = version
            if new and self._order[-1][1] == row[0]:
                self._carry(self._rows[row[0]], version)

    def _carry(self, kept: _Kept, version: int) -> None:
        """A new session placed last (a create, the usual case): the lists built at the version
        before move to this one without a rebuild, those it belongs to with its text appended
        (was: every list rebuilt from every kept row after each create)."""
        for state, (built_at, result) in list(self._built.items()):
            if built_at != version - 1:
                continue
            if state is None or state == kept.row[2]:
                rows = result["sessions"]
                text = result.text
                result = EncodedResult({"sessions": [*rows, kept.public]},
                                       text[:-2] + ("," if rows else "") + kept.text + "]}")
            self._built[state] = (version, result)

    def _put(self, row: tuple) -> bool:
        """Apply one stored row; False if the kept rows can no longer be exact (the limit)."""
        old = self._rows.get(row[0])
        if old is not None and old.row == row:
            return True
        if old is None and len(self._rows) >= LIST_LIMIT:
            return False
        if old is not None and old.row[3] != row[3]:
            self._order.remove((old.row[3], old.row[0]))
            old = None
        if old is None:
            insort(self._order, (row[3], row[0]))
        self._rows[row[0]] = _kept(row)
        return True

    async def _read(self, state: str | None) -> EncodedResult | None:
        """Read the newest sessions (one more than a list shows: are there more?). None: they are
        kept, exact at the store's version; else the list of `state` from this read."""
        store, log = self._store, []
        version, quiet = store.sessions_version, not store.sessions_writing
        self._reading.append(log)
        self._read_done = done = asyncio.Event()
        try:
            rows = await store.list_session_rows(limit=LIST_LIMIT + 1)
        finally:
            self._reading.remove(log)
            if self._read_done is done:
                self._read_done = None
            done.set()
        kept = _reuse(self._rows, rows)
        self._rows, self._order, self._version = kept, [(r[3], r[0]) for r in rows], None  # the store's order
        complete = len(rows) <= LIST_LIMIT
        if complete and store.sessions_version == version + len(log) and all(self._put(r) for r in log):
            self._version = store.sessions_version
            return None
        if complete or state is None:
            result = _result([kept[r[0]] for r in rows[-LIST_LIMIT:]], state)
        else:  # the newest of this state may lie among older sessions than the newest of all
            of_state = await store.list_session_rows(state=state, limit=LIST_LIMIT)
            result = _result(list(_reuse(kept, of_state).values()), None)
        unchanged = quiet and not store.sessions_writing and store.sessions_version == version
        if unchanged and (state is None or state in _STATES):
            self._built[state] = (version, result)  # nothing written meanwhile: exact at `version`
        return result


def _kept(row: tuple) -> _Kept:
    public = dict(zip(SESSION_COLUMNS, row))
    return _Kept(row, public, encode_json(public))


def _reuse(known: dict[str, _Kept], rows: list[tuple]) -> dict[str, _Kept]:
    """`rows` by id (in their order), each with the dict and text kept for it if unchanged."""
    out = {}
    for row in rows:
        old = known.get(row[0])
        out[row[0]] = old if old is not None and old.row == row else _kept(row)
    return out


def _result(rows: list[_Kept], state: str | None) -> EncodedResult:
    if state is not None:
        rows = [k for k in rows if k.row[2] == state]
    return EncodedResult({"sessions": [k.public for k in rows]},
                         '{"sessions":[' + ",".join(k.text for k in rows) + "]}")
