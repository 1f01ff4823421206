"""The tamper-evident audit: chain.py (each row's hash, the verify walk; pure), heads.py (chain
heads in the log and a file), offline.py (verify, signed export, read from the store file), cli.py
(`dispatch-gateway audit ...`), request.py (a request's ok row, committed with its one write). The
table itself: gateway/store/audit.py."""
