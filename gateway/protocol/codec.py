"""Sans-I/O JSON-RPC 2.0 codec of the control channel (protocol v1).

Parsing never raises on peer input: a text frame becomes a `Request`, a `Notification`, a
`Response` (client side) or an `Invalid` carrying the `GatewayError` to answer with. Encoding
returns the text of one frame. No asyncio, no sockets: tested without them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

from gateway.errors import GatewayError, InvalidParams, InvalidRequest, ParseError
from gateway.text import first_bad_text

JSONRPC = "2.0"
EVENT_METHOD = "event"

RequestId = Union[int, str]

_MAX_ID_LEN = 128
_MAX_METHOD_LEN = 64
# A JSON escape of a UTF-16 surrogate; only messages that have one are walked for lone ones.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_B = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Request:
    """A call that wants a reply: `id` is an int or a non-empty string."""

    id: RequestId
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """A message without `id` (server -> client: events; client -> server: ignored)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    """A reply (client side): exactly one of `result` / `error` is set."""

    id: RequestId | None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Invalid:
    """Peer input we cannot act on. Reply with `error` to `id` (None when unknown)."""

    id: RequestId | None
    error: GatewayError


Message = Union[Request, Notification, Response, Invalid]


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    if isinstance(value, str):
        return 0 < len(value) <= _MAX_ID_LEN
    return False


def _load(text: str | bytes) -> Any | Invalid:
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Invalid(None, ParseError("parse error", details={"why": str(exc)[:200]}))


def _refuse_bad_text(obj: dict[str, Any]) -> Invalid | None:
    """Strings that are no UTF-8 text (JSON escapes of lone surrogates) are refused here,
    before anything could log, store or echo them: the field is named in the error."""
    raw_id = obj.get("id")
    if first_bad_text(raw_id) is not None:
        return Invalid(None, InvalidRequest('"id" is not valid UTF-8 text'))
    reply_id = raw_id if "id" in obj and _valid_id(raw_id) else None
    if first_bad_text(list(obj)) is not None:
        return Invalid(reply_id, InvalidRequest("a member name is not valid UTF-8 text"))
    if first_bad_text(obj.get("method")) is not None:
        return Invalid(reply_id, InvalidRequest('"method" is not valid UTF-8 text'))
    loc = first_bad_text(obj.get("params"))
    if loc is None:
        return None
    return Invalid(reply_id, InvalidParams("invalid params", details={"errors": [
        {"loc": loc or "params",
         "msg": "not valid UTF-8 text (a lone surrogate escape)", "type": "invalid_text"}]}))


def parse_message(text: str | bytes) -> Request | Notification | Invalid:
    """Parse one text frame sent by a client. Never raises."""
    obj = _load(text)
    if isinstance(obj, Invalid):
        return obj
    if isinstance(obj, list):
        return Invalid(None, InvalidRequest("batches not supported", details={"why": "batch"}))
    if not isinstance(obj, dict):
        return Invalid(None, InvalidRequest("a message must be a JSON object"))
    if (_SURROGATE_ESCAPE if isinstance(text, str) else _SURROGATE_ESCAPE_B).search(text):
        refused = _refuse_bad_text(obj)
        if refused is not None:
            return refused
    has_id = "id" in obj
    raw_id = obj.get("id")
    # Echo the id when it is usable, so the peer can match the error to its request.
    reply_id = raw_id if has_id and _valid_id(raw_id) else None
    if obj.get("jsonrpc") != JSONRPC:
        return Invalid(reply_id, InvalidRequest('"jsonrpc" must be "2.0"'))
    if has_id and not _valid_id(raw_id):
        return Invalid(None, InvalidRequest('"id" must be an integer or a non-empty string'))
    method = obj.get("method")
    if not isinstance(method, str) or not method or len(method) > _MAX_METHOD_LEN:
        return Invalid(reply_id, InvalidRequest('"method" must be a non-empty string'))
    extra = set(obj) - {"jsonrpc", "id", "method", "params"}
    if extra:
        return Invalid(
            reply_id, InvalidRequest("unknown members", details={"members": sorted(extra)})
        )
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        if not has_id:
            return Invalid(None, InvalidRequest('"params" must be an object'))
        return Invalid(reply_id, InvalidParams('"params" must be an object'))
    if not has_id:
        return Notification(method, params)
    return Request(raw_id, method, params)


def parse_response(text: str | bytes) -> Response | Notification | Invalid:
    """Parse one text frame sent by the gateway (client side). Never raises."""
    obj = _load(text)
    if isinstance(obj, Invalid):
        return obj
    if not isinstance(obj, dict) or obj.get("jsonrpc") != JSONRPC:
        return Invalid(None, InvalidRequest("not a JSON-RPC 2.0 object"))
    if "method" in obj:
        params = obj.get("params", {})
        if not isinstance(obj["method"], str) or not isinstance(params, dict) or "id" in obj:
            return Invalid(None, InvalidRequest("bad notification"))
        return Notification(obj["method"], params)
    raw_id = obj.get("id")
    if raw_id is not None and not _valid_id(raw_id):
        return Invalid(None, InvalidRequest("bad id"))
    has_result, has_error = "result" in obj, "error" in obj
    if has_result == has_error:
        return Invalid(raw_id, InvalidRequest("exactly one of result / error"))
    if has_error:
        err = obj["error"]
        if (
            not isinstance(err, dict)
            or isinstance(err.get("code"), bool)
            or not isinstance(err.get("code"), int)
            or not isinstance(err.get("message"), str)
        ):
            return Invalid(raw_id, InvalidRequest("bad error object"))
        return Response(raw_id, error=err)
    result = obj["result"]
    if not isinstance(result, dict):
        return Invalid(raw_id, InvalidRequest("result must be an object"))
    return Response(raw_id, result=result)


# One encoder for every frame (json.dumps with these options would build one per call).
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_dump_str = json.encoder.encode_basestring  # what that encoder writes for a str
_c_encoder = json.encoder.c_make_encoder  # None without the C accelerator


def _dump(value: Any) -> str:
    """`_encoder.encode(value)`, calling the C encoder it would build directly: not its `encode`
    and `iterencode` in Python (two frames a call; every event and every frame is encoded here,
    the SMS events in the database thread against the event loop). Same text, same errors (a
    circular value: ValueError, through the fresh markers dict)."""
    if isinstance(value, str):
        return _dump_str(value)
    if _c_encoder is None:  # pragma: no cover - CPython has it
        return _encoder.encode(value)
    return "".join(_c_encoder({}, _encoder.default, _dump_str, None, ":", ",", False, False, False)(value, 0))


def encode_request(id: RequestId, method: str, params: dict[str, Any] | None = None) -> str:
    return _dump({"jsonrpc": JSONRPC, "id": id, "method": method, "params": params or {}})


def encode_json(value: Any) -> str:
    """`value` as the codec writes it in a frame (compact, UTF-8 as is)."""
    return _dump(value)


class EncodedResult(dict):
    """A result (a read-only dict) that keeps its JSON text, encoded once on first use (or given:
    `text` must be `encode_json(value)`): a reply shared by many requests (a cached
    `session.list`) costs a string join, not an encoding."""

    __slots__ = ("_text",)

    def __init__(self, value: dict[str, Any], text: str | None = None) -> None:
        super().__init__(value)
        self._text = text

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = _dump(self)
        return self._text


def encode_result(id: RequestId, result: dict[str, Any]) -> str:
    """Raises TypeError / ValueError when `result` is not JSON (our bug, not the peer's)."""
    if isinstance(result, EncodedResult):  # the same text as below, the result's part made once
        return f'{{"jsonrpc":"{JSONRPC}","id":{_dump(id)},"result":{result.text}}}'  # type: ignore[arg-type]
    return _dump({"jsonrpc": JSONRPC, "id": id, "result": result})


def encode_error(id: RequestId | None, error: GatewayError) -> str:
    return _dump({"jsonrpc": JSONRPC, "id": id, "error": error.to_error()})


def encode_notification(method: str, params: dict[str, Any]) -> str:
    """A notification other than an event (e.g. `terminal.instruction` to a terminal)."""
    return _dump({"jsonrpc": JSONRPC, "method": method, "params": params})


def encode_event(params: dict[str, Any]) -> str:
    """An event notification; `params` is `{"seq","type","time","session_id","data"}`."""
    return _dump({"jsonrpc": JSONRPC, "method": EVENT_METHOD, "params": params})


_EVENT_HEAD = '{"jsonrpc":"2.0","method":"event","params":{"seq":'


def encode_stored_event(seq: int, type: str, time: str, session_id: str | None, data_json: str) -> str:
    """`encode_event` of a stored event whose data is already encoded (`data_json` =
    `encode_json(data)`, as the store keeps it): the same text, with only the short fields
    encoded (at carrier rates encoding each event's data twice was a tenth of the loop's time)."""
    sid = "null" if session_id is None else _dump_str(session_id)
    return (f'{_EVENT_HEAD}{int(seq)},"type":{_dump_str(type)},"time":{_dump_str(time)},'
            f'"session_id":{sid},"data":{data_json}}}}}')
