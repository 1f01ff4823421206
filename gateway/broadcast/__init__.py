"""Broadcast: paging calls over SIP and multicast RTP zones."""
