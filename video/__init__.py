"""The video side: Janus as the media engine, run and driven by the gateway.

Media never passes through the gateway's Python process. This package holds what talks to
Janus: its generated configuration (janus_config), the supervised process (janus_process), the
WebSocket API client (janus_client) over a sans-I/O core (janus_protocol), the pool that places
streams on the least loaded instance (pool) and the recording post-processing (recording).
The control-channel side (video.pull / video.watch / video.stop) is gateway/services/video.py.
"""
