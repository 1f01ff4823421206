"""The parts of the gateway whose state the probe loop records (gateway/kpi/checks.py)."""

PARTS = ("store", "sip", "front", "sms", "media", "disk")
