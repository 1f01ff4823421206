"""JSON Schema of protocol v1, generated from the params models of the method table.

`python -m gateway.protocol.schema > docs/protocol.schema.json` regenerates the committed file
(then `cd console && npm run gen-types`: the console's TypeScript types come from it);
a test checks the committed file equals `render()`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from . import media
from .methods import METHODS, MethodSpec

SCHEMA_ID = "https://dispatch-gateway.invalid/protocol/v1/schema.json"


def _method_schema(spec: MethodSpec) -> dict[str, Any]:
    return {
        "summary": spec.summary,
        "roles": sorted(spec.roles),
        "starts_work": spec.starts_work,
        "runs_to_end": spec.runs_to_end,
        "params": spec.params_model.model_json_schema(mode="validation"),
    }


def protocol_schema(methods: dict[str, MethodSpec] | None = None) -> dict[str, Any]:
    methods = METHODS if methods is None else methods
    rid = {"oneOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 128}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Dispatch gateway control channel, protocol v1",
        "protocol": 1,
        "envelopes": {
            "request": {
                "type": "object",
                "additionalProperties": False,
                "required": ["jsonrpc", "id", "method"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "id": rid,
                    "method": {"type": "string", "enum": sorted(methods)},
                    "params": {"type": "object"},
                },
            },
            "result": {
                "type": "object",
                "required": ["jsonrpc", "id", "result"],
                "properties": {"jsonrpc": {"const": "2.0"}, "id": rid, "result": {"type": "object"}},
            },
            "error": {
                "type": "object",
                "required": ["jsonrpc", "id", "error"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "id": {"oneOf": [rid, {"type": "null"}]},
                    "error": {
                        "type": "object",
                        "required": ["code", "message", "data"],
                        "properties": {
                            "code": {"type": "integer"},
                            "message": {"type": "string"},
                            "data": {
                                "type": "object",
                                "required": ["reason"],
                                "properties": {
                                    "reason": {"type": "string"},
                                    "details": {"type": "object"},
                                },
                            },
                        },
                    },
                },
            },
            "event": {
                "type": "object",
                "required": ["jsonrpc", "method", "params"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": "event"},
                    "params": {
                        "type": "object",
                        "required": ["seq", "type", "time", "session_id", "data"],
                        "properties": {
                            "seq": {"type": "integer", "minimum": 0},
                            "type": {"type": "string"},
                            "time": {"type": "string", "format": "date-time"},
                            "session_id": {"type": ["string", "null"]},
                            "data": {"type": "object"},
                        },
                    },
                },
            },
        },
        "media_header": {
            "size": media.HEADER_SIZE,
            "byte_order": "big-endian header, PCM16LE payload",
            "fields": [
                {"offset": 0, "size": 1, "name": "version", "value": media.VERSION},
                {"offset": 1, "size": 1, "name": "kind", "values": {"1": "audio"}},
                {"offset": 2, "size": 2, "name": "channel"},
                {"offset": 4, "size": 4, "name": "seq"},
                {"offset": 8, "size": 4, "name": "timestamp"},
            ],
        },
        "methods": {name: _method_schema(methods[name]) for name in sorted(methods)},
    }


def render(methods: dict[str, MethodSpec] | None = None) -> str:
    return json.dumps(protocol_schema(methods), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
