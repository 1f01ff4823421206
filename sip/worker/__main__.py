"""`python -m sip.worker`: the worker process (or, with --probe, the capacity probe)."""

from .process import main

main()
