"""`[sms]`: the provider and how the outbox sends (validated by gateway/config.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str = "AC00000000000000000000000000000000"
    auth_token: str = ""
    api_base: str = "https://api.twilio.com"
    public_url: str = "http://127.0.0.1:8080"  # where Twilio reaches our webhooks (signatures use it)
    timeout_s: float = 10.0
    # The API calls (creates, lookups) in a worker process of their own (sms/api_worker), off the
    # gateway's core; false: in the gateway's process. The webhooks are the gateway's either way.
    api_worker: bool = True
    api_worker_stall_s: float = 5.0  # the worker silent this long (no answer to a ping): killed, restarted


@dataclass(frozen=True)
class SmppSettings:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    source_addr: str = ""
    part_ttl_s: float = 86_400.0  # a message's parts are forgotten when final, or after this
    response_timeout_s: float = 10.0  # no submit_sm_resp by then: the attempt timed out


@dataclass(frozen=True)
class SmsConfig:
    provider: str = "none"  # none | twilio | smpp
    sender: str = "+15005550006"  # the From number (E.164) unless sms.send names another
    senders: tuple[str, ...] = ()  # other From numbers sms.send may name (besides `sender`)
    max_segments: int = 10
    rate_per_s: float = 1.0  # per sender
    burst: float = 1.0
    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    in_flight: int = 20  # provider requests at once
    reconcile_after_s: float = 60.0  # a `sent` message with no final receipt by then is looked up
    give_up_after_s: float = 86_400.0  # still `sent` this long after creation: failed, no-receipt
    receipt_window_s: float = 120.0  # after a submit timeout SMPP cannot list: wait this for a receipt
    intake_limit: int = 256  # receipts / inbound being stored at once; beyond: "retry later"
    intake_wait_s: float = 2.0  # all slots busy: wait in line this long for one, then "retry later"
    intake_timeout_s: float = 10.0  # storing one takes longer: "retry later" (the provider resends)
    inbound_dedup_window_s: float = 600.0  # SMPP: the same text from the same number is a redelivery
    templates: Mapping[str, str] = field(default_factory=dict)
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    smpp: SmppSettings = field(default_factory=SmppSettings)

    def __post_init__(self) -> None:
        if self.provider not in ("none", "twilio", "smpp"):
            raise ValueError(f"sms.provider: {self.provider!r} is not none, twilio or smpp")
        object.__setattr__(self, "templates", MappingProxyType(dict(self.templates)))
        object.__setattr__(self, "senders", tuple(self.senders))

    @property
    def allowed_senders(self) -> tuple[str, ...]:
        """Every From number sms.send may name: `sender` first, then `senders`, no repeats."""
        return tuple(dict.fromkeys((self.sender, *self.senders)))
