"""The `dispatch-gateway audit ...` commands (parsed in gateway/cli.py): configuration in, one
JSON line out on stdout, a one-line reason on stderr and exit status 1 when something does not
verify, 2 for a configuration problem."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .heads import read_heads
from .offline import AuditError, export, load_key, verify_export, verify_store


def audit_command(args: argparse.Namespace) -> int:
    from gateway.cli import load_command_config

    config = load_command_config(args)
    if config is None:
        return 2
    db = args.db if args.db is not None else config.store_path
    key_conf = (config.audit.export_key, config.audit.export_key_file)
    try:
        if args.audit_command == "verify":
            heads_path = Path(args.heads) if args.heads else config.audit.heads_path(config.gateway.data_dir)
            heads = read_heads(heads_path)  # before the store's snapshot: see verify_store
            report, points = verify_store(db, heads)
            _print({**report.to_dict(), **points, "db": str(db), "heads_file": str(heads_path)})
            if report.problem is not None:
                print(f"dispatch-gateway: audit chain broken: {report.problem.message}", file=sys.stderr)
                return 1
            return 0
        if args.audit_command == "export":
            _print(export(db, args.path, load_key(*key_conf), args.since, args.until))
            return 0
        _print(verify_export(args.path, load_key(*key_conf)))
        return 0
    except AuditError as err:
        print(f"dispatch-gateway: {err}", file=sys.stderr)
        return 1


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)
