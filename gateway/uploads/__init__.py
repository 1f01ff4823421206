"""Uploads (photos, audio clips) over the http port and the `terminal.feedback` that refers to
them: type sniffing (sniff.py), content-addressed files (blobs.py), the service (service.py),
the HTTP routes (http.py) and the control-channel method's service (feedback.py)."""

from .service import Stored, UploadRefused, UploadService

__all__ = ["Stored", "UploadRefused", "UploadService"]
