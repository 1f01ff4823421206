"""The provider `[sms] provider` names, built from its settings (None when SMS is off)."""

from __future__ import annotations

from sms.config import SmsConfig
from sms.provider import Provider


def make_provider(config: SmsConfig) -> Provider | None:
    if config.provider == "twilio":
        from sms.twilio import TwilioProvider

        t = config.twilio
        return TwilioProvider(t.account_sid, t.auth_token, from_number=config.sender, api_base=t.api_base,
                              public_url=t.public_url, timeout_s=t.timeout_s,
                              max_connections=config.in_flight)  # one pool, as wide as the in-flight limit
    if config.provider == "smpp":
        from sms.smpp import SmppProvider

        m = config.smpp
        return SmppProvider(m.host, m.port, m.system_id, m.password, system_type=m.system_type,
                            source_addr=m.source_addr, part_ttl_s=m.part_ttl_s,
                            response_timeout_s=m.response_timeout_s,
                            queue_size=max(100, config.in_flight))  # the window: in_flight submits out at once
    return None
