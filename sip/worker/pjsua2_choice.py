"""Which pjsua2 module the worker imports: the source build installed beside the venv, or the wheel.

scripts/install.sh builds pjsua2 from pjproject's source (scripts/build_pjsua2.sh: hundreds of
calls per process) and links the cached build at <venv>/share/dispatch-gateway/pjsua2; the PyPI
wheel `pjsua2-python` (4 calls per process) stays installed as the fallback. The environment
variable DISPATCH_GATEWAY_PJSUA2 chooses:

- unset or ``auto``: the source build when installed, else the wheel;
- ``wheel``: the wheel, even when a source build is installed;
- ``source``: the source build, or ImportError;
- a directory: the build in it (a pjsua2.py, _pjsua2*.so and build.json from build_pjsua2.sh).

Chosen once per process, before any module of sip/worker imports pjsua2 (sip/worker/__init__.py);
worker processes inherit the variable from the gateway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

ENV = "DISPATCH_GATEWAY_PJSUA2"


def installed_build() -> str:
    return os.path.join(sys.prefix, "share", "dispatch-gateway", "pjsua2")


def choose(environ: Mapping[str, str] = os.environ) -> str | None:
    """Put the chosen source build first on sys.path; its directory, or None for the wheel."""
    choice = environ.get(ENV, "auto") or "auto"
    if choice == "wheel":
        return None
    path = installed_build() if choice in ("auto", "source") else choice
    if not os.path.isfile(os.path.join(path, "pjsua2.py")):
        if choice == "auto":
            return None
        raise ImportError(f"{ENV}={choice}: no pjsua2 source build at {path}")
    path = os.path.realpath(path)
    if path not in sys.path:
        sys.path.insert(0, path)
    return path
