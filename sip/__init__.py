"""SIP voice through supervised pjsua2 worker processes.

Only the worker process imports pjsua2 (the modules of sip/worker/, e.g. sip.worker.process);
importing this package does not.
"""

from .config import SipConfig, SipRegistration
from .errors import (
    InvalidState,
    NoCapacity,
    NoSuchCall,
    SipError,
    SipUnavailable,
    TargetError,
    WorkerError,
)
from .supervisor import SipEvent, SipSupervisor, probe_calls_per_worker

__all__ = [
    "InvalidState",
    "NoCapacity",
    "NoSuchCall",
    "SipConfig",
    "SipError",
    "SipEvent",
    "SipRegistration",
    "SipSupervisor",
    "SipUnavailable",
    "TargetError",
    "WorkerError",
    "probe_calls_per_worker",
]
