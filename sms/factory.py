"""The provider `[sms] provider` names, built from its settings (None when SMS is off)."""

from __future__ import annotations

from sms.config import SmsConfig
from sms.provider import Provider


def make_provider(config: SmsConfig, log_level: str = "info") -> Provider | None:
    """`log_level`: the gateway's, for a provider's worker process (its lines are logged again)."""
    if config.provider == "twilio":
        t = config.twilio
        if t.api_worker:  # the API calls in sms.api_worker, the webhooks here
            from sms.twilio_process import TwilioProcessProvider

            return TwilioProcessProvider(t.account_sid, t.auth_token, from_number=config.sender, api_base=t.api_base,
                                         public_url=t.public_url, timeout_s=t.timeout_s,
                                         max_connections=config.in_flight, stall_s=t.api_worker_stall_s,
                                         log_level=log_level)
        from sms.twilio import TwilioProvider

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
