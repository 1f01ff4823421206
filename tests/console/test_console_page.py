"""The /console routes (gateway/console_page.py) without a whole gateway: the build output
served from memory with its security headers, config.json naming the control channel, and a
clear 503 when the console was never built."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from gateway import http
from gateway.console_page import ConsoleConfig, ConsolePage

CFG = ConsoleConfig(control_path="/v1/control", control_tls=False, control_url=None)


async def _client(root: Path, control_port: int | None = 8765) -> TestClient:
    page = await ConsolePage.load(CFG, lambda: control_port, root)
    client = TestClient(TestServer(http.make_app({}, page.routes())))
    await client.start_server()
    return client


async def test_not_built_answers_503_saying_how_to_build(tmp_path: Path) -> None:
    client = await _client(tmp_path / "dist")
    try:
        for path in ("/console/", "/console/assets/index.js"):
            r = await client.get(path)
            assert r.status == 503
            assert "scripts/install.sh" in await r.text()
        r = await client.get("/console", allow_redirects=False)
        assert r.status == 308 and r.headers["Location"] == "/console/"
    finally:
        await client.close()


async def test_serves_the_build_with_its_headers_and_config(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>x</title>")
    (dist / "assets" / "index-abc.js").write_text("export {};")
    (dist / "assets" / "notes.txt").write_text("not served")
    client = await _client(dist)
    try:
        r = await client.get("/console/")
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "connect-src 'self' ws://127.0.0.1:8765;" in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        r = await client.get("/console/assets/index-abc.js")
        assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
        assert (await client.get("/console/assets/notes.txt")).status == 404
        assert (await client.get("/console/../pyproject.toml")).status == 404
        r = await client.get("/console/config.json")
        assert json.loads(await r.text()) == {"protocol": 1, "control_url": "ws://127.0.0.1:8765/v1/control"}
        assert r.headers["Cache-Control"] == "no-store"
    finally:
        await client.close()


async def test_config_is_503_while_the_control_channel_is_not_listening(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html>")
    client = await _client(dist, control_port=None)
    try:
        assert (await client.get("/console/config.json")).status == 503
    finally:
        await client.close()


async def test_a_map_tile_url_is_named_in_config_and_allowed_by_the_csp(tmp_path: Path) -> None:
    """`http.console_map_tiles`: the Terminals view's map tiles; config.json names it and the CSP
    allows images from its origin (and from nothing else when unset: no external request)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>x</title>")
    tiles = "https://tiles.example.org:8443/osm/{z}/{x}/{y}.png"
    cfg = ConsoleConfig(control_path="/v1/control", control_tls=False, control_url=None, map_tiles=tiles)
    page = await ConsolePage.load(cfg, lambda: 8765, dist)
    client = TestClient(TestServer(http.make_app({}, page.routes())))
    await client.start_server()
    try:
        r = await client.get("/console/config.json")
        assert json.loads(await r.text())["map_tiles"] == tiles
        img = next(d for d in r.headers["Content-Security-Policy"].split("; ") if d.startswith("img-src"))
        assert img == "img-src 'self' blob: data: https://tiles.example.org:8443"
    finally:
        await client.close()
    plain = await _client(dist)
    try:
        r = await plain.get("/console/")
        assert "img-src 'self' blob: data:;" in r.headers["Content-Security-Policy"]
        assert "map_tiles" not in json.loads(await (await plain.get("/console/config.json")).text())
    finally:
        await plain.close()
