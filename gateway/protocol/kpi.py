"""`kpi.*` of protocol v1: the two indicators (normal operation, timeliness) over a window, and
planned maintenance windows (declared and taken back by an admin, listed to every reader)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from gateway.kpi.parts import PARTS

from .methods import READ, MethodSpec, Params, _spec


def _utc(v: str) -> str:
    try:
        when = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 time like 2026-12-02T00:00:00Z") from None
    if when.tzinfo is None:
        raise ValueError("give the offset (Z for UTC)")
    return v


Time = Annotated[str, Field(max_length=40, description="ISO 8601 with an offset, e.g. 2026-12-02T00:00:00Z"),
                 AfterValidator(_utc)]


def epoch(v: str) -> float:
    return dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


class KpiGetParams(Params):
    since: Time
    until: Time | None = Field(None, description="default: now")
    group_by: Literal["hour", "day"] | None = Field(None, description="also the figures of each hour or day")


class KpiMaintenanceAddParams(Params):
    start: Annotated[Time, Field(description="ISO 8601 with an offset, not more than kpi.maintenance_grace_s "
                                             "(default 60 s) before now (else refused: maintenance-in-past)")]
    end: Time
    parts: list[Literal[PARTS]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(PARTS), description="empty: the whole gateway")
    reason: str = Field(min_length=1, max_length=200)


class KpiMaintenanceListParams(Params):
    since: Time | None = Field(None, description="windows ending after this (default: all)")
    until: Time | None = Field(None, description="windows starting before this (default: all)")


class KpiMaintenanceDeleteParams(Params):
    maintenance_id: int = Field(ge=1, description="as kpi.maintenance.add or .list gave it")


KPI_METHODS: tuple[MethodSpec, ...] = (
    _spec("kpi.get", READ, KpiGetParams,
          summary="normal-operation availability and timeliness over a window, outages and misses listed"),
    _spec("kpi.maintenance.add", (), KpiMaintenanceAddParams, runs_to_end=True,
          summary="declare a planned maintenance window (admin), before it begins: reported apart, not "
                  "counted as outage"),
    _spec("kpi.maintenance.list", READ, KpiMaintenanceListParams,
          summary="the maintenance windows overlapping a window, planned, ongoing or over"),
    _spec("kpi.maintenance.delete", (), KpiMaintenanceDeleteParams, runs_to_end=True,
          summary="take a window back (admin): a planned one is deleted, one under way ended now, "
                  "one over refused"),
)
