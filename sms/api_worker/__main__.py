"""`python -m sms.api_worker`: the config is the first message on stdin (sms/api_ipc.py)."""

from .serve import main

main()
