"""`GET /v1/kpi/reports/{day}` on the http port: the daily report of a UTC day (YYYY-MM-DD, or
`today`) as a self-contained HTML page, to a control-channel token of a reading role (dispatcher,
observer, admin; a terminal's token gets 403). Authentication, its throttle and the audit are the
uploads' (gateway/uploads/http.py), as for video recordings."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import structlog
from aiohttp import hdrs, web

from gateway.errors import Forbidden, GatewayError, InvalidParams
from gateway.http import Route
from gateway.protocol import Principal
from gateway.protocol.methods import READ
from gateway.uploads.http import Audit, error_response

from .service import KpiService

log = structlog.get_logger(__name__)

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def report_routes(kpi: KpiService, principal_of: Callable[[web.Request], Principal],
                  audit: Audit | None = None) -> list[Route]:
    async def report(request: web.Request) -> web.StreamResponse:
        raw = request.match_info["day"]
        principal: Principal | None = None
        err: GatewayError | None = None
        day = dt.datetime.now(dt.UTC).date()
        try:
            principal = principal_of(request)
            if principal.role not in READ:
                raise Forbidden("this role may not read reports", details={"role": principal.role})
            if raw != "today":
                if not _DAY.match(raw):
                    raise InvalidParams("the day is YYYY-MM-DD or today", details={"day": raw[:32]})
                try:
                    day = dt.date.fromisoformat(raw)
                except ValueError:
                    raise InvalidParams("no such day", details={"day": raw}) from None
        except GatewayError as e:
            err = e
        if principal is not None and audit is not None:
            try:
                await audit(principal.name, principal.role, "http.kpi.report", {"day": raw[:32]},
                            "error" if err else "ok", err.reason if err else None)
            except Exception:
                log.exception("http.audit.failed", method="http.kpi.report")
        if err is not None:
            return error_response(err)
        path = await kpi.report_for_reading(day)
        return web.FileResponse(path, headers={hdrs.CONTENT_TYPE: "text/html; charset=utf-8",
                                               hdrs.CACHE_CONTROL: "no-store"})

    return [("GET", "/v1/kpi/reports/{day}", report)]
