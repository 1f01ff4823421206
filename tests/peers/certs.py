"""Certificates made at run time with the `openssl` CLI, for TLS tests: a CA, a server
certificate it signed for 127.0.0.1 and localhost, the server's key, and a key of another pair."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: str  # the CA's certificate: what a client trusts (--ca-file)
    cert: str  # the server's certificate, signed by the CA
    key: str  # the server's key
    other_key: str  # a key that belongs to neither certificate


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(where: Path) -> Certs:
    assert shutil.which("openssl"), "the openssl CLI is required (scripts/install.sh installs it)"
    where.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=dispatch-gateway test CA", cwd=where)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=where)
    (where / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                      "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=where)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key",
             cwd=where)
    return Certs(*(str(where / n) for n in ("ca.pem", "server.pem", "server.key", "other.key")))
