"""An instruction's state at one terminal, as a table (sans I/O).

    queued --deliver--> delivered --ack--> acknowledged
    queued / delivered --fallback--> fallback-sms --ack--> acknowledged

`deliver` is the terminal confirming it holds the instruction (`terminal.received`, or its
`terminal.ack`, which implies it); `fallback` is the text going out by SMS because the terminal was
offline or silent past the ack timeout. A terminal that comes back after its SMS went still gets
the instruction over the channel: `deliver` in `fallback-sms` keeps the state (the delivery time
is recorded beside it), and a later `ack` still counts. `acknowledged` is final.
"""

from __future__ import annotations

import enum

from gateway.state.table import Machine


class DeliveryState(str, enum.Enum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    FALLBACK_SMS = "fallback-sms"
    ACKNOWLEDGED = "acknowledged"


class DeliveryInput(str, enum.Enum):
    DELIVER = "deliver"
    ACK = "ack"
    FALLBACK = "fallback"


_S, _I = DeliveryState, DeliveryInput

DELIVERY_MACHINE: Machine[DeliveryState, DeliveryInput] = Machine(
    "instruction delivery",
    {
        _S.QUEUED: {_I.DELIVER: _S.DELIVERED, _I.ACK: _S.ACKNOWLEDGED, _I.FALLBACK: _S.FALLBACK_SMS},
        _S.DELIVERED: {_I.ACK: _S.ACKNOWLEDGED, _I.FALLBACK: _S.FALLBACK_SMS},
        _S.FALLBACK_SMS: {_I.DELIVER: _S.FALLBACK_SMS, _I.ACK: _S.ACKNOWLEDGED},
        _S.ACKNOWLEDGED: {},
    },
    final=frozenset({_S.ACKNOWLEDGED}),
)


def needs_fallback(state: DeliveryState, require_ack: bool) -> bool:
    """At the ack deadline: does this delivery go out by SMS? (Not acknowledged when an ack is
    required; not even delivered when it is not.)"""
    if state is DeliveryState.QUEUED:
        return True
    return state is DeliveryState.DELIVERED and require_ack
