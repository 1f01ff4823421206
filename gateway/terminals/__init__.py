"""Field terminals, sans I/O: presence (who is online, who missed heartbeats) and the rate limit
of live-location events. The service that owns their timers is gateway/services/terminals.py."""

from .gate import LocationGate, Offer
from .presence import Presence, PresenceChange, PresenceTable, Reason, TerminalPresence

__all__ = ["LocationGate", "Offer", "Presence", "PresenceChange", "PresenceTable", "Reason",
           "TerminalPresence"]
