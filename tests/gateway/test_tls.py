"""TLS on both listeners, against the gateway run as its own process (issue 8 §1): wss:// on the
control channel and HTTPS on the http port, from a certificate made here with the openssl CLI.
A client trusting the CA file gets in (the Python client and the CLI); one that does not, or one
speaking plain ws:// / http:// to a TLS port, fails with a clear error. Twilio's webhooks arrive
over HTTPS, signed over the https URL the provider used."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys

import aiohttp
import pytest

from gateway.client import GatewayClient, TlsError
from tests.gateway.conftest import EventWatch
from tests.gateway.gateway_proc import gateway_proc
from tests.gateway.test_listener_limits import overrides
from tests.peers.certs import Certs, make_certs
from tests.peers.prism import repo_root
from tests.peers.twilio_stub import twilio_signature, twilio_stub

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "gw-tls-test-auth-token-5e2a"


@pytest.fixture
def certs(tmp_path) -> Certs:
    return make_certs(tmp_path / "certs")


def tls_overrides(tmp_path, certs: Certs, **more):
    return overrides(tmp_path, **{"control.tls_cert": certs.cert, "control.tls_key": certs.key,
                                  "http.tls_cert": certs.cert, "http.tls_key": certs.key, **more})


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=repo_root(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_wss_control_and_https_health(tmp_path, certs):
    sets = tls_overrides(tmp_path, certs)
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        wss = gw.url
        assert wss.startswith("wss://")
        client = await GatewayClient.connect(wss, "tok-dispatcher", ca_file=certs.ca, reconnect=False)
        try:
            assert client.hello["principal"] == "alice"
            session = await client.call("session.create", title="over TLS")
            assert session["session_id"]
        finally:
            await client.close()
        with pytest.raises(TlsError, match="not trusted"):  # the system's CAs do not know ours
            await GatewayClient.connect(wss, "tok-dispatcher", reconnect=False)
        with pytest.raises(TlsError, match="use wss://"):  # plain ws:// to the TLS listener
            await GatewayClient.connect(wss.replace("wss://", "ws://"), "tok-dispatcher", reconnect=False)

        code, out, err = await cli("rpc", "session.list", "--url", wss, "--token", "tok-dispatcher",
                                   "--ca-file", certs.ca)
        assert code == 0 and any(s["title"] == "over TLS" for s in json.loads(out)["sessions"]), (out, err)
        code, out, err = await cli("rpc", "ping", "--url", wss, "--token", "tok-dispatcher")
        assert code == 1 and "not trusted" in err and "Traceback" not in err, err

        https = f"https://127.0.0.1:{sets['http.port']}"
        trust = ssl.create_default_context(cafile=certs.ca)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(https + "/healthz", ssl=trust) as r:
                assert r.status == 200 and await r.json() == {"status": "ok"}
            async with http.get(https + "/readyz", ssl=trust) as r:
                assert (await r.json())["checks"]["store"] is True
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(https + "/healthz")  # not trusted
            with pytest.raises(aiohttp.ClientError):  # plain HTTP to the HTTPS port
                await http.get(https.replace("https://", "http://") + "/healthz")
    log = gw.log.read_text()
    assert "Traceback" not in log and "control.server.started" in log and "wss://" in log


async def test_twilio_webhooks_over_https_signed_over_the_https_url(tmp_path, certs):
    async with twilio_stub(SID, TOKEN, ca_file=certs.ca) as stub:
        sets = tls_overrides(tmp_path, certs)
        public = f"https://127.0.0.1:{sets['http.port']}"
        sets.update({"sms.provider": "twilio", "sms.twilio.account_sid": SID, "sms.twilio.auth_token": TOKEN,
                     "sms.twilio.api_base": stub.url, "sms.twilio.public_url": public,
                     "sms.twilio.timeout_s": 5})
        async with gateway_proc(sets, tmp_path) as gw:
            await gw.start()
            client = await GatewayClient.connect(gw.url, "tok-dispatcher", ca_file=certs.ca, reconnect=False)
            try:
                await client.subscribe(client.hello["seq"])
                w = EventWatch(client)
                sent = await client.call("sms.send", to=["+15551230001"], body="over https")
                # the stub's status callbacks reach the webhook over HTTPS, signed for that URL
                await w.wait(lambda e: e["type"] == "sms.status" and e["data"]["state"] == "delivered", 30)
                assert (await client.call("sms.get", send_id=sent["send_id"]))["counts"] == {"delivered": 1}
                assert stub.callbacks and all(200 <= answer < 300 for _, _, answer in stub.callbacks)
                inbound = public + "/webhooks/twilio/inbound"
                status, _ = await stub.send_inbound(inbound, "+15551230001", "+15005550006", "ack")
                assert status == 200
                ev = await w.wait(lambda e: e["type"] == "sms.inbound", 15)
                assert ev["data"]["body"] == "ack"
                # signed over the http:// form of the same URL: not what the provider used
                params = stub.inbound_params(SID, "+15551230001", "+15005550006", "forged")
                status, _ = await stub.post_signed(inbound, params, sign_url=inbound.replace("https://", "http://"))
                assert status == 403
                assert twilio_signature(TOKEN, inbound, params) != twilio_signature(
                    TOKEN, inbound.replace("https://", "http://"), params)
                await w.close()
            finally:
                await client.close()


def test_client_ca_file_problems_are_clear(tmp_path, certs):
    with pytest.raises(TlsError, match="ca_file .*nope.pem"):
        GatewayClient("wss://127.0.0.1:1/v1/control", "t", ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(TlsError, match="not a readable PEM"):
        GatewayClient("wss://127.0.0.1:1/v1/control", "t", ca_file=str(tmp_path))
    with pytest.raises(ValueError, match="wss://"):
        GatewayClient("ws://127.0.0.1:1/v1/control", "t", ca_file=certs.ca)
