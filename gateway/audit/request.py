"""The audit row a control request will have if it succeeds, carried by its one store write.

A request's audit row records its outcome, so the server writes it once the handler has returned
(gateway/connection_requests.py `_execute`). A command whose whole effect is one store write (`session.create`,
`session.close`) then waited for two commits in turn: its write's, then its audit row's. Instead,
when the audit hook writes to the store the handlers write to (`ServerHooks.audit_in_writes`), the
server hands the handler a `RequestAudit` (`RequestContext.audit`) and the handler passes it to
that write: the store commits the `ok` row in the same transaction, after the write (and its
event), both or neither, and marks it `written`; the server writes nothing more for an ok outcome.

The guarantees stay: the reply goes out after the write, its event and its audit row are
committed; the row is the same chained INSERT in commit order (gateway/store/audit.py). A write
that fails is undone alone, its `ok` row with it, and the server audits the failure as before. A
request whose outcome fails after its write committed gets its error row too (both happened). A
request with an idempotency key gets no `RequestAudit`: its stored result is a second write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestAudit:
    """Who asked for what (the params as audited); `written` once a write committed its ok row."""

    principal: str
    role: str
    method: str
    params: dict[str, Any]
    written: bool = False
