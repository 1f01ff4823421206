"""[video] and the Janus configuration generated from it (no Janus started here)."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from video.config import VideoConfig
from video.janus_config import JanusSettings, render_janus_jcfg, render_websockets_jcfg, write_config


def test_instances_split_the_rtp_ports_and_take_consecutive_api_ports() -> None:
    cfg = VideoConfig(instances=2, ws_base_port=9000, rtp_port_min=40000, rtp_port_max=49999)
    one, two = cfg.janus_settings(0), cfg.janus_settings(1)
    assert (one.ws_port, one.rtp_port_range, one.name) == (9000, "40000-44999", "janus-1")
    assert (two.ws_port, two.rtp_port_range, two.name) == (9001, "45000-49999", "janus-2")
    assert one.api_secret != two.api_secret and len(one.api_secret) >= 24


def test_defaults_no_ice_servers_no_stun_mdns_ignored(tmp_path) -> None:
    cfg = load_config(None)
    assert cfg.video.enabled is False and cfg.video.ice_servers == ()
    assert cfg.video.rtc_ice_servers() == []
    text = render_janus_jcfg(JanusSettings(ice_enforce_list="v1"), tmp_path)
    assert "stun" not in text.lower()
    assert "ignore_mdns = true" in text and 'ice_enforce_list = "v1"' in text
    assert "ice_enforce_list" not in render_janus_jcfg(JanusSettings(), tmp_path)
    # only VideoRoom and the WebSocket transport are loaded; the API listens on loopback only
    assert "libjanus_videoroom.so" not in text and "libjanus_sip.so" not in text
    assert "libjanus_streaming.so" in text
    assert "libjanus_websockets.so" not in text and "libjanus_http.so" in text
    assert 'ws_ip = "127.0.0.1"' in render_websockets_jcfg(JanusSettings())


def test_written_config_is_private(tmp_path) -> None:
    s = JanusSettings(api_secret="s3cret-" + "x" * 20)
    cfg = write_config(s, tmp_path / "run")
    assert (cfg.stat().st_mode & 0o077) == 0 and s.api_secret in cfg.read_text()


@pytest.mark.parametrize("value", ['eth0"\n', "a\\b"])
def test_nothing_can_break_out_of_a_config_string(tmp_path, value) -> None:
    with pytest.raises(ValueError):
        render_janus_jcfg(JanusSettings(ice_enforce_list=value), tmp_path)


@pytest.mark.parametrize("override, key", [
    ('video.ice_servers=["http://example.com"]', "video.ice_servers"),
    ('video.ice_enforce_list="eth0; rm"', "video.ice_enforce_list"),
    ("video.instances=65", "video.instances"),
    ('video.remote=[{url = "http://10.0.0.5:8188", api_secret = "x"}]', "video.remote[0]"),
    ('video.remote=[{url = "ws://10.0.0.5:8188"}]', "video.remote[0]"),
])
def test_bad_video_settings_name_their_key(override, key) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides=[override])
    assert err.value.key == key


def test_ice_servers_from_config_are_handed_out() -> None:
    cfg = load_config(None, overrides=['video.ice_servers=["stun:10.0.0.1:3478", "turn:10.0.0.1"]'])
    assert cfg.video.rtc_ice_servers() == [{"urls": "stun:10.0.0.1:3478"}, {"urls": "turn:10.0.0.1"}]


def test_remote_instances_and_their_secrets() -> None:
    from gateway.logs import config_secrets

    cfg = load_config(None, overrides=["video.enabled=true", "video.instances=0",
                                       'video.remote=[{url = "wss://media-2:8989", api_secret = "r3mote-s3cret"}]'])
    (remote,) = cfg.video.remote
    assert remote.settings(0).ws_url == "wss://media-2:8989" and remote.settings(0).name == "remote-1"
    assert "r3mote-s3cret" in config_secrets(cfg)  # redacted from logs
    with pytest.raises(ConfigError):  # video on with nothing to run it
        load_config(None, overrides=["video.enabled=true", "video.instances=0"])
