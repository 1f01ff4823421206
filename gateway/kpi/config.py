"""`[kpi]`: the probe loop, the parts that make the whole, the dispatch deadlines, the reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config_fields import _Bad, _Field, _int, _seconds, _str, _show

from .parts import PARTS


@dataclass(frozen=True)
class KpiConfig:
    probe_interval_s: float = 5.0  # each part probed (and the run's heartbeat written) this often
    probe_timeout_s: float = 2.0  # a probe not answered within this: the part is down
    min_free_bytes: int = 256 * 1024 * 1024  # the "disk" part is down below this free in gateway.data_dir
    whole: tuple[str, ...] = PARTS  # the parts a dispatcher needs (those not running here are left out)
    call_deadline_s: float = 30.0  # a call to a phone: connected or a final answer within this
    broadcast_deadline_s: float = 10.0  # a broadcast's SIP target connected within this
    sms_deadline_s: float = 60.0  # an SMS delivered (receipt) within this
    instruction_deadline_s: float = 60.0  # a terminal instruction delivered (acknowledged if asked) within this
    reports_dir: str = "reports"  # daily HTML reports, under gateway.data_dir unless absolute
    metrics_interval_s: float = 60.0  # the last 24 h's figures on /metrics are computed again this often
    maintenance_grace_s: float = 60.0  # kpi.maintenance.add refuses a window starting longer than this ago

    def deadlines(self) -> dict[str, float]:
        return {"call": self.call_deadline_s, "broadcast": self.broadcast_deadline_s,
                "sms": self.sms_deadline_s, "instruction": self.instruction_deadline_s}


def _parts(default: tuple[str, ...]) -> _Field:
    def check(v: Any) -> tuple[str, ...]:
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x in PARTS for x in v):
            raise _Bad(f"must be a list of parts among {', '.join(PARTS)}, got {_show(v)}")
        return tuple(dict.fromkeys(v))

    return _Field("list", check, default)


KPI_SCHEMA = {
    "probe_interval_s": _seconds(5),
    "probe_timeout_s": _seconds(2),
    "min_free_bytes": _int(0, 2**62, 256 * 1024 * 1024),
    "whole": _parts(PARTS),
    "call_deadline_s": _seconds(30),
    "broadcast_deadline_s": _seconds(10),
    "sms_deadline_s": _seconds(60),
    "instruction_deadline_s": _seconds(60),
    "reports_dir": _str("reports"),
    "metrics_interval_s": _seconds(60),
    "maintenance_grace_s": _seconds(60),
}
