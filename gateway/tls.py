"""TLS for the listeners: `wss://` on the control channel, HTTPS on the http port (webhooks,
/healthz, /readyz), each from a PEM certificate (chain) and key named in config
(`control.tls_cert` / `control.tls_key`, `http.tls_cert` / `http.tls_key`).

`pair_problem` is run by gateway/config.py at load, so a missing or unreadable file, a file that
is not PEM or a key that does not belong to the certificate stops `serve` with the key named;
`server_context` builds the context the listener serves with.
"""

from __future__ import annotations

import ssl


def _no_passphrase() -> bytes:
    return b""  # never prompt on a terminal: an encrypted key fails instead


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 or later) for `cert` and `key`. Raises OSError / ssl.SSLError."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key, password=_no_passphrase)
    return ctx


def _unreadable(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        return f"file not found: {path!r}"
    except OSError as e:
        return f"cannot be read: {path!r} ({e.strerror or e})"
    return None


def pair_problem(section: str, cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(key, why) for the first problem with `<section>.tls_cert` / `<section>.tls_key`, else None."""
    cert_key, key_key = f"{section}.tls_cert", f"{section}.tls_key"
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing, given = (cert_key, key_key) if cert is None else (key_key, cert_key)
        return missing, f"is required when {given} is set (TLS needs both)"
    for name, path in ((cert_key, cert), (key_key, key)):
        why = _unreadable(path)
        if why is not None:
            return name, why
    try:
        ssl.create_default_context().load_verify_locations(cafile=cert)
    except (ssl.SSLError, ValueError):
        return cert_key, f"not a PEM certificate: {cert!r}"
    try:
        server_context(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            return key_key, f"does not match the certificate in {cert_key} ({key!r} is another key)"
        return key_key, f"not a PEM private key without a passphrase: {key!r} ({e.reason or e})"
    except OSError as e:
        return key_key, f"cannot be loaded: {e}"
    return None
