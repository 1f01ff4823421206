"""Uploads and terminal.feedback against the real gateway: photos and audio clips (real files made
by ffmpeg) over HTTP, stored once by SHA-256, referred to by `terminal.feedback` in an incident,
downloaded by the roles that may read it; and every bad input refused precisely with nothing
stored: no file (not even a temp one), no row, no event."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.client import RemoteError
from tests.gateway.test_terminals import TERMINALS
from tests.uploads.conftest import samples  # noqa: F401  (the fixture)

pytestmark = pytest.mark.peers  # a whole gateway (SIP workers: pjsua2) and ffmpeg

BASE = {"directory.endpoint": TERMINALS}


def url(gw: Any, sha: str = "") -> str:
    return f"http://127.0.0.1:{gw.http_port}/v1/uploads" + (f"/{sha}" if sha else "")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upload(http: aiohttp.ClientSession, gw: Any, data: Any, kind: str,
                 token: str = "tok-terminal", **kw: Any) -> tuple[int, dict]:
    async with http.post(url(gw), data=data, headers={**auth(token), "Content-Type": kind}, **kw) as r:
        return r.status, await r.json()


def files(gw: Any) -> list[Path]:
    """Every file under the uploads directory (tmp/ included)."""
    return sorted(p for p in Path(gw.config.uploads_dir).rglob("*") if p.is_file())


async def rows(gw: Any, table: str) -> list[tuple]:
    return await gw.store.fetchall(f"SELECT * FROM {table}")


async def test_upload_feedback_and_download_by_role(start_gateway, connect, watch, samples) -> None:
    gw = await start_gateway(**BASE)
    alice = await connect(gw)
    w = await watch(alice)
    unit = await connect(gw, "tok-terminal")
    session = await alice.call("session.create", title="Fire, dock 4")
    async with aiohttp.ClientSession() as http:
        stored = {}
        for kind, data in samples.items():  # every type, declared the way phones declare them
            declared = {"audio/webm": "audio/webm;codecs=opus", "audio/mp4": "audio/x-m4a"}.get(kind, kind)
            status, body = await upload(http, gw, data, declared)
            sha = hashlib.sha256(data).hexdigest()
            assert (status, body) == (201, {"upload_id": sha, "sha256": sha, "size": len(data), "type": kind,
                                            "url": f"/v1/uploads/{sha}"}), kind
            stored[kind] = sha
            assert (Path(gw.config.uploads_dir) / sha[:2] / sha).read_bytes() == data
        # The same bytes again: the same answer (200), stored once.
        status, again = await upload(http, gw, samples["image/jpeg"], "image/jpeg")
        assert status == 200 and again["sha256"] == stored["image/jpeg"]
        assert len(files(gw)) == len(samples)
        # Another principal with the same bytes: 201 as for anything new to it (whether someone
        # else sent them is not told), still one file; it owns its upload, not the terminal's.
        status, theirs = await upload(http, gw, samples["image/jpeg"], "image/jpeg", token="tok-dispatcher")
        assert status == 201 and theirs["sha256"] == stored["image/jpeg"] and len(files(gw)) == len(samples)

        photo, clip = stored["image/jpeg"], stored["audio/ogg"]
        res = await unit.call("terminal.feedback", session_id=session["session_id"],
                              text="两人受伤, roof collapsing", uploads=[photo, clip])
        ev = await w.wait(lambda e: e["type"] == "terminal.feedback")
        assert ev["session_id"] == session["session_id"] and ev["seq"] == res["seq"]
        assert ev["data"]["terminal_id"] == "unit-7" and ev["data"]["text"] == "两人受伤, roof collapsing"
        assert [(u["sha256"], u["type"], u["size"]) for u in ev["data"]["uploads"]] == [
            (photo, "image/jpeg", len(samples["image/jpeg"])), (clip, "audio/ogg", len(samples["audio/ogg"]))]
        got = await alice.call("session.get", session_id=session["session_id"])
        assert got["session_id"] == session["session_id"]

        # Readers of the incident download it: type, length, bytes; a range too.
        for token in ("tok-dispatcher", "tok-observer", "tok-admin", "tok-terminal"):
            async with http.get(url(gw, photo), headers=auth(token)) as r:
                assert r.status == 200, token
                assert r.headers["Content-Type"] == "image/jpeg"
                assert int(r.headers["Content-Length"]) == len(samples["image/jpeg"])
                assert await r.read() == samples["image/jpeg"]
        async with http.head(url(gw, clip), headers=auth("tok-observer")) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(samples["audio/ogg"])
        async with http.get(url(gw, clip), headers={**auth("tok-observer"), "Range": "bytes=4-11"}) as r:
            assert r.status == 206 and await r.read() == samples["audio/ogg"][4:12]
            assert r.headers["Content-Type"] == "audio/ogg"

        # Not referred to by any feedback: only its uploader reads it.
        loose = stored["image/png"]
        async with http.get(url(gw, loose), headers=auth("tok-terminal")) as r:
            assert r.status == 200 and await r.read() == samples["image/png"]
        for token in ("tok-dispatcher", "tok-terminal-9"):
            async with http.get(url(gw, loose), headers=auth(token)) as r:
                assert r.status == 403 and (await r.json())["error"]["reason"] == "forbidden"
        # Another terminal does not read this incident's files.
        async with http.get(url(gw, photo), headers=auth("tok-terminal-9")) as r:
            assert r.status == 403
        # No token, a bad token, an unknown or malformed id.
        async with http.get(url(gw, photo)) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"]["reason"] == "not-authenticated"
        async with http.get(url(gw, photo), headers=auth("tok-wrong-token")) as r:
            assert r.status == 401
        for sha in ("0" * 64, "not-a-hash"):
            async with http.get(url(gw, sha), headers=auth("tok-dispatcher")) as r:
                assert r.status == 404 and (await r.json())["error"]["reason"] == "no-such-upload"
    # Audited like control-channel requests: who uploaded and who downloaded what.
    mine = await gw.store.list_audit(principal="unit-7", limit=1000)
    assert {(a["method"], a["params"].get("sha256"), a["result"]) for a in mine if a["method"] == "http.upload"} == {
        ("http.upload", sha, "ok") for sha in stored.values()}
    olga = [(a["method"], a["params"]["upload_id"], a["result"])
            for a in await gw.store.list_audit(principal="olga") if a["method"] == "http.download"]
    assert ("http.download", photo, "ok") in olga and ("http.download", clip, "ok") in olga


async def test_bad_uploads_are_refused_precisely_and_leave_nothing(start_gateway, connect, samples) -> None:
    gw = await start_gateway(**BASE, **{"uploads.max_bytes": 65536, "control.hello_failures_burst": 3,
                                        "control.hello_failure_refill_s": 600})
    jpeg = samples["image/jpeg"]
    big = jpeg + os.urandom(70_000)  # a real JPEG head, over the limit
    async with aiohttp.ClientSession() as http:
        cases: list[tuple[Any, str, dict, int, str]] = [
            (big, "image/jpeg", {}, 413, "too-large"),  # declared length over the limit
            (big, "image/jpeg", {"expect100": True}, 413, "too-large"),  # refused before the body
            (jpeg, "audio/ogg", {}, 415, "type-mismatch"),  # a photo declared as a clip
            (b"<html>not a photo</html>" * 4, "image/png", {}, 415, "type-mismatch"),
            (samples["audio/wav"], "text/plain", {}, 415, "unsupported-type"),
            (samples["audio/wav"], "application/octet-stream", {}, 415, "unsupported-type"),
            (b"", "image/jpeg", {}, 400, "empty-upload"),
        ]
        for data, kind, kw, status, reason in cases:
            got, body = await upload(http, gw, data, kind, **kw)
            assert (got, body["error"]["reason"]) == (status, reason), (kind, kw)

        async def chunked():  # no Content-Length: counted while streaming
            for i in range(0, len(big), 8192):
                yield big[i:i + 8192]

        got, body = await upload(http, gw, chunked(), "image/jpeg")
        assert (got, body["error"]["reason"]) == (413, "too-large")
        assert body["error"]["details"]["max_bytes"] == 65536
        # Who may not upload: an observer; nobody without a valid token.
        got, body = await upload(http, gw, jpeg, "image/jpeg", token="tok-observer")
        assert (got, body["error"]["reason"]) == (403, "forbidden")
        [audited] = await gw.store.list_audit(principal="olga")
        assert (audited["method"], audited["result"], audited["error_reason"]) == ("http.upload", "error", "forbidden")
        got, body = await upload(http, gw, jpeg, "image/jpeg", token="tok-not-a-token")
        assert (got, body["error"]["reason"]) == (401, "not-authenticated")
        async with http.post(url(gw), data=jpeg, headers={"Content-Type": "image/jpeg"}) as r:
            assert r.status == 401
        # Guessing tokens spends the address's budget, the same as failed hellos: then even a
        # good token is not tried (429), on the control channel too.
        for _ in range(2):
            got, _body = await upload(http, gw, jpeg, "image/jpeg", token="tok-guess-again")
            assert got == 401
        got, body = await upload(http, gw, jpeg, "image/jpeg")
        assert (got, body["error"]["reason"]) == (429, "rate-limited")
        with pytest.raises(RemoteError) as exc:
            await connect(gw, "tok-dispatcher", reconnect=False)
        assert exc.value.reason == "rate-limited"
    assert files(gw) == [] and await rows(gw, "uploads") == []


async def test_a_client_cut_off_mid_upload_leaves_nothing(start_gateway, samples) -> None:
    gw = await start_gateway(**BASE)
    _, w = await asyncio.open_connection("127.0.0.1", gw.http_port)
    w.write(b"POST /v1/uploads HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tok-terminal\r\n"
            b"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + samples["image/jpeg"][:300])
    await w.drain()
    async with asyncio.timeout(10):  # being received: its temp file is there
        while not files(gw):
            await asyncio.sleep(0.02)
    w.close()  # the field link drops
    async with asyncio.timeout(10):
        while not (audit := [a for a in await gw.store.list_audit(principal="unit-7") if a["method"] == "http.upload"]):
            await asyncio.sleep(0.02)
    assert (audit[0]["result"], audit[0]["error_reason"]) == ("error", "incomplete-upload")
    assert files(gw) == [] and await rows(gw, "uploads") == []


async def test_a_principal_keeps_at_most_its_quota_of_unsent_uploads(start_gateway, connect, samples) -> None:
    jpeg, png, wav = samples["image/jpeg"], samples["image/png"], samples["audio/wav"]
    quota = len(jpeg) + len(png) + len(wav) - 1  # the two photos fit, the clip then does not
    gw = await start_gateway(**BASE, **{"uploads.max_pending_bytes": quota})
    unit = await connect(gw, "tok-terminal")
    async with aiohttp.ClientSession() as http:
        shas = [(await upload(http, gw, data, kind))[1]["sha256"] for data, kind in ((jpeg, "image/jpeg"),
                                                                                       (png, "image/png"))]
        got, body = await upload(http, gw, wav, "audio/wav")
        assert (got, body["error"]["reason"]) == (507, "quota-exceeded")
        assert body["error"]["details"] == {"pending_bytes": len(jpeg) + len(png), "max_pending_bytes": quota}
        got, _ = await upload(http, gw, wav, "audio/wav", token="tok-dispatcher")
        assert got == 201  # another principal has its own quota
        assert [p.name for p in files(gw)] == sorted(shas + [hashlib.sha256(wav).hexdigest()],
                                                     key=lambda h: (h[:2], h))
        await unit.call("terminal.feedback", text="two photos", uploads=shas)  # sent: no longer pending
        got, _ = await upload(http, gw, wav, "audio/wav")
        assert got == 201


async def test_an_upload_that_would_fill_the_disk_is_refused(start_gateway, samples) -> None:
    gw = await start_gateway(**BASE, **{"uploads.min_free_bytes": 2**62})  # more than any disk has
    async with aiohttp.ClientSession() as http:
        got, body = await upload(http, gw, samples["image/jpeg"], "image/jpeg")
    assert (got, body["error"]["reason"]) == (507, "storage-full")
    assert files(gw) == [] and await rows(gw, "uploads") == []


async def test_feedback_refusals_store_nothing(start_gateway, connect, watch, samples) -> None:
    gw = await start_gateway(**BASE)
    alice = await connect(gw)
    w = await watch(alice)
    unit = await connect(gw, "tok-terminal")
    session = await alice.call("session.create", title="Flood")
    sid = session["session_id"]
    async with aiohttp.ClientSession() as http:
        _, mine = await upload(http, gw, samples["image/jpeg"], "image/jpeg")
        _, theirs = await upload(http, gw, samples["image/png"], "image/png", token="tok-dispatcher")
    before = await rows(gw, "uploads")

    async def refused(method: str, client: Any = unit, **params: Any) -> RemoteError:
        with pytest.raises(RemoteError) as exc:
            await client.call(method, **params)
        return exc.value

    err = await refused("terminal.feedback", session_id=sid, uploads=[mine["sha256"], theirs["sha256"]])
    assert err.reason == "forbidden" and err.details["uploads"] == [theirs["sha256"]]
    err = await refused("terminal.feedback", session_id=sid, uploads=[mine["sha256"], "a" * 64])
    assert err.reason == "no-such-upload" and err.details["uploads"] == ["a" * 64]
    err = await refused("terminal.feedback", session_id=sid, text="hi", terminal_id="unit-9")
    assert err.reason == "forbidden"  # a terminal posts only as itself
    err = await refused("terminal.feedback", client=alice, session_id=sid, text="hi")
    assert err.reason == "forbidden"  # not a dispatcher's method
    err = await refused("terminal.feedback", session_id="no-such-incident", text="hi")
    assert err.reason == "no-such-session"
    for bad in ({}, {"text": ""}, {"uploads": ["XYZ"]}, {"uploads": [mine["sha256"]] * 2},
                {"text": "x" * 4001}):
        err = await refused("terminal.feedback", session_id=sid, **bad)
        assert err.reason == "invalid-params", bad
    await alice.call("session.close", session_id=sid)
    err = await refused("terminal.feedback", session_id=sid, text="too late")
    assert err.reason == "invalid-state"
    assert await rows(gw, "upload_refs") == [] and await rows(gw, "uploads") == before
    assert not [e for e in w.events if e["type"] == "terminal.feedback"]
    # Without an incident named and none current: stored without one. Repeated with its
    # idempotency key (a terminal that lost the reply): the first result, nothing new.
    res = await unit.call("terminal.feedback", text="on scene", uploads=[mine["sha256"]], idempotency_key="fb-1")
    assert res["session_id"] is None and len(await rows(gw, "upload_refs")) == 1
    assert await unit.call("terminal.feedback", text="on scene", uploads=[mine["sha256"]],
                           idempotency_key="fb-1") == res
    assert len(await rows(gw, "upload_refs")) == 1
    # Given an instruction in an incident, that is the terminal's current one: feedback goes there.
    other = (await alice.call("session.create", title="Flood, north bank"))["session_id"]
    await alice.call("terminal.instruct", targets=["unit-7"], text="go north", session_id=other, fallback="none")
    res = await unit.call("terminal.feedback", text="at the north bank")
    assert res["session_id"] == other
    ev = await w.wait(lambda e: e["type"] == "terminal.feedback" and e["data"]["feedback_id"] == res["feedback_id"])
    assert ev["session_id"] == other and ev["data"]["uploads"] == []


async def test_concurrent_uploads_are_bounded_and_a_stalled_one_times_out(start_gateway, samples) -> None:
    gw = await start_gateway(**BASE, **{"uploads.max_concurrent": 1, "uploads.body_timeout_s": 3})
    jpeg = samples["image/jpeg"]
    release = asyncio.Event()

    async def stalled():
        yield jpeg[:100]
        await release.wait()
        yield jpeg[100:]

    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(upload(http, gw, stalled(), "image/jpeg"))
        async with asyncio.timeout(10):  # its temp file is there: it holds the one slot
            while not files(gw):
                await asyncio.sleep(0.02)
        status, body = await upload(http, gw, samples["audio/wav"], "audio/wav")
        assert (status, body["error"]["reason"]) == (503, "busy")
        status, body = await first  # never released: the body deadline answers
        assert (status, body["error"]["reason"]) == (408, "body-timeout")
        release.set()
        assert files(gw) == [] and await rows(gw, "uploads") == []
        status, body = await upload(http, gw, jpeg, "image/jpeg")  # the slot is free again
        assert status == 201


async def test_retention_removes_orphans_keeps_referenced(start_gateway, connect, tmp_path, samples) -> None:
    leftover = tmp_path / "data" / "uploads" / "tmp" / "up-killed-mid-upload"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a photo")
    gw = await start_gateway(**BASE, **{"uploads.orphan_keep_s": 3600, "store.prune_interval_s": 86400})
    assert not leftover.exists()  # a killed run's partial upload is gone at start
    unit = await connect(gw, "tok-terminal")
    async with aiohttp.ClientSession() as http:
        _, kept = await upload(http, gw, samples["image/jpeg"], "image/jpeg")
        _, orphan = await upload(http, gw, samples["audio/wav"], "audio/wav")
    await unit.call("terminal.feedback", text="photo", uploads=[kept["sha256"]])
    stray = "f" * 64  # a file with no row (a gateway killed between the rename and the row)
    stray_path = Path(gw.config.uploads_dir) / "ff" / stray
    stray_path.parent.mkdir(exist_ok=True)
    stray_path.write_bytes(b"x")
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).timestamp()
    os.utime(stray_path, (old, old))

    counts = await gw.retention.prune_once()  # now: nothing is old enough
    assert counts["uploads"] == 0 and counts["upload_files"] == 1 and not stray_path.exists()
    real = gw.retention.clock
    gw.retention.clock = lambda: real() + dt.timedelta(hours=2)  # the orphan is 2 h old
    counts = await gw.retention.prune_once()
    assert counts["uploads"] == 1 and counts["upload_files"] == 1
    names = [p.name for p in files(gw)]
    assert names == [kept["sha256"]]
    assert [r[0] for r in await rows(gw, "uploads")] == [kept["sha256"]]
    # Past store.events_keep_days the reference goes with the incident's events, then the file.
    gw.retention.clock = lambda: real() + dt.timedelta(days=gw.config.store.events_keep_days + 1)
    counts = await gw.retention.prune_once()
    assert counts["upload_refs"] == 1 and counts["uploads"] == 1 and counts["upload_files"] == 1
    assert files(gw) == [] and await rows(gw, "upload_refs") == []
