"""The HTTP status of the package's typed errors on the http port (gateway/uploads/http.py):
by error class, so any `no-such-*` (an upload, a recording) is a 404, and our own bug a 500."""

from __future__ import annotations

from gateway.errors import Forbidden, GatewayError, NotAuthenticated, NotFound, RateLimited, Unavailable
from gateway.uploads.http import error_response
from gateway.uploads.service import TooLarge


def test_http_status_of_each_error_class() -> None:
    cases = [(NotAuthenticated("x"), 401), (Forbidden("x"), 403), (NotFound("x", reason="no-such-recording"), 404),
             (RateLimited("x"), 429), (Unavailable("x", reason="shutting-down"), 503), (TooLarge("x"), 413),
             (GatewayError("bug"), 500)]
    for err, status in cases:
        response = error_response(err)
        assert response.status == status, err
