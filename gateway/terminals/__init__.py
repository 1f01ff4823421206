"""Field terminals, sans I/O: presence (who is online, who missed heartbeats), the rate limit of
live-location events, and an instruction's delivery state at one terminal. The services owning
their timers are gateway/services/terminals.py and gateway/services/instructions.py."""

from .gate import LocationGate, Offer
from .instruction import DELIVERY_MACHINE, DeliveryInput, DeliveryState, needs_fallback
from .presence import Presence, PresenceChange, PresenceTable, Reason, TerminalPresence

__all__ = [
    "DELIVERY_MACHINE", "DeliveryInput", "DeliveryState", "LocationGate", "Offer", "Presence",
    "PresenceChange", "PresenceTable", "Reason", "TerminalPresence", "needs_fallback",
]
