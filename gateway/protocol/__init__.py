"""Sans-I/O control channel of protocol v1: JSON-RPC codec, method table, media frame header."""

from .codec import (
    Invalid,
    Notification,
    Request,
    Response,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
    parse_message,
    parse_response,
)
from .media import MediaFrame, MediaFrameError
from .methods import (
    ADMIN,
    DISPATCHER,
    METHODS,
    OBSERVER,
    ROLES,
    TERMINAL,
    MethodSpec,
    Principal,
    Registry,
    RequestContext,
    validate_params,
)
from .schema import protocol_schema, render as render_schema

PROTOCOL_VERSION = 1

__all__ = [
    "ADMIN", "DISPATCHER", "METHODS", "OBSERVER", "PROTOCOL_VERSION", "ROLES", "TERMINAL",
    "Invalid", "MediaFrame", "MediaFrameError", "MethodSpec", "Notification", "Principal",
    "Registry", "Request", "RequestContext", "Response", "encode_error", "encode_event",
    "encode_request", "encode_result", "parse_message", "parse_response", "protocol_schema",
    "render_schema", "validate_params",
]
