"""The operations sections of the configuration: `[audit]` (the chain heads, the export key) and
`[metrics]` (who may read /metrics). Dataclasses and their SCHEMA entries; gateway/config_schema.py
puts them in `Config` and `SCHEMA`. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config_fields import _seconds, _str


@dataclass(frozen=True)
class AuditConfig:
    """The tamper-evident audit (gateway/audit/): heads recorded outside the store, export signing."""

    head_interval_s: float = 60.0  # the chain head is logged and appended to heads_file this often (if it moved)
    heads_file: str = "audit-heads.jsonl"  # under gateway.data_dir unless absolute
    export_key: str | None = None  # HMAC key of `audit export` (a secret: file or environment only)
    export_key_file: str | None = None  # or a file holding it (mode 0600); wins over export_key

    def heads_path(self, data_dir: str) -> Path:
        return Path(data_dir) / self.heads_file


@dataclass(frozen=True)
class MetricsConfig:
    """GET /metrics on the http port (gateway/metrics/): answered to loopback clients, and to others
    only with `Authorization: Bearer <token>` when a token is configured."""

    token: str | None = None  # a secret: file or environment only


# Keys that hold a secret: refused on the command line (`--set` shows in `ps`).
SECRET_KEYS = frozenset({"audit.export_key", "metrics.token"})

OPS_SCHEMA = {
    "audit": {
        "head_interval_s": _seconds(60),
        "heads_file": _str("audit-heads.jsonl", what="a file path"),
        "export_key": _str(None, what="a non-empty key"),
        "export_key_file": _str(None, what="a file path"),
    },
    "metrics": {
        "token": _str(None, what="a non-empty token"),
    },
}
