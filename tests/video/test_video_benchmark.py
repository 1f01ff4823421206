"""The video benchmark (benchmarks/video.py, aiortc peers) at its smallest, so it does not rot:
one terminal publishing the pre-encoded clip through the gateway and Janus, one console view;
every figure the report quotes comes out, with frames and delays measured at the viewer."""

from __future__ import annotations

import pytest

from benchmarks.video import parse_args, run_aiortc
from tests.peers.media_netns import MediaNetns

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]


async def test_the_video_benchmark_runs_at_its_smallest(media_netns: MediaNetns) -> None:
    args = parse_args(["--publishers", "1", "--consoles", "1", "--viewers", "1",
                       "--duration", "3", "--clip-s", "2"])
    result = await run_aiortc(args, media_netns)

    assert [p["views"] for p in result["phases"]] == [0, 1]
    watched = result["phases"][1]
    assert watched["viewer_fps"]["p50"] >= 5, watched  # the source is 20 fps
    assert watched["delay_ms"]["n"] >= 10 and watched["delay_ms"]["p50"] < 1000, watched
    assert result["janus_pct_per_publisher"] is not None and "janus_pct_per_view" in result
    assert set(result["gateway_pct"]) == {"idle", "0 views", "1 views"}
    assert 500 < result["clip_kbps"] < 1500  # the clip is what the report says: VP8 at ~800 kbps
