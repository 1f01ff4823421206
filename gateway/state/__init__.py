"""Sans-I/O state machines, each written as a transition table (no asyncio, no sockets)."""

from gateway.state.call import CallInput, CallState, CALL_MACHINE
from gateway.state.session import SessionInput, SessionState, SESSION_MACHINE
from gateway.state.table import InvalidTransition, Machine

__all__ = [
    "CALL_MACHINE",
    "SESSION_MACHINE",
    "CallInput",
    "CallState",
    "InvalidTransition",
    "Machine",
    "SessionInput",
    "SessionState",
]
