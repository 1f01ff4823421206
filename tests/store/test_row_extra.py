"""A row's `extra` is decoded as json.loads decodes it, with json's C scanner called directly (a
stored SMS is read at every step: json.loads' three Python frames and two whitespace matches a row
were more than the rest of the row, issue 13)."""

from __future__ import annotations

import json
import sys

import pytest

from gateway.store.rows import _extra, _row_out

TEXTS = ['{"sent_by":"alice"}', '{"sent_by": "alice", "ref": {"k": "\\u00e9\\"\\\\", "n": [1, 2.5, null]}}',
         ' {"a": 1}', '{"a": 1}\n', '[1]', '"x"']


def test_extra_is_what_json_loads_makes_of_it() -> None:
    for text in TEXTS:
        assert _extra(text) == json.loads(text)
    assert _extra("{}") == {} and _extra("") == {} and _extra(None) == {}
    for bad in ('{"a": 1}x', "x", '{"a"', "{'a': 1}"):
        with pytest.raises(json.JSONDecodeError) as ours:
            _extra(bad)
        with pytest.raises(json.JSONDecodeError) as theirs:
            json.loads(bad)
        assert str(ours.value) == str(theirs.value)


def test_reading_a_row_runs_no_python_of_json() -> None:
    files: list[str] = []

    def trace(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call":
            files.append(frame.f_code.co_filename)

    sys.setprofile(trace)
    try:
        row = _row_out(("message_id", "state"), ("m1", "sent", '{"sent_by":"alice"}'))
    finally:
        sys.setprofile(None)
    assert row == {"message_id": "m1", "state": "sent", "extra": {"sent_by": "alice"}}
    assert not [f for f in files if "json" in f], files
