"""`dispatch-gateway`: run the gateway, or drive a running one from a shell.

    dispatch-gateway serve --config config/gateway.toml [--set section.key=value ...]
    dispatch-gateway call sip:alice@127.0.0.1 [--hangup-after 10]
    dispatch-gateway events [--since 0]
    dispatch-gateway rpc session.list '{"state": "open"}'
    dispatch-gateway kpi --since 24h [--until 2026-12-02T00:00:00Z] [--group-by hour] [--json] [--db FILE]
    dispatch-gateway backup /var/backups/gateway-2026-12-01.db [--uploads DIR] [--recordings DIR] [--config ...]   (online)
    dispatch-gateway restore /var/backups/gateway-2026-12-01.db [--uploads DIR] [--recordings DIR] [--config ...]  (gateway stopped)
    dispatch-gateway audit verify [--config ...] [--db FILE] [--heads FILE]
    dispatch-gateway audit export OUT.jsonl [--since 2026-12-01] [--until 2026-12-02] [--config ...]
    dispatch-gateway audit verify-export OUT.jsonl [--config ...]

Client commands take --url and --token, or DISPATCH_URL and DISPATCH_TOKEN from the environment;
for a wss:// URL whose certificate the system does not trust, --ca-file (or DISPATCH_CA_FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from gateway.errors import ConfigError

DEFAULT_URL = "ws://127.0.0.1:8765/v1/control"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatch-gateway", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", default=None, help="TOML file (default: embedded defaults only)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting (repeatable); wins over file and environment")

    def store_command(name: str, help: str) -> argparse.ArgumentParser:
        return _store_args(sub.add_parser(name, help=help))

    b = store_command("backup", "copy the store to PATH while the gateway runs (SQLite backup API)")
    b.add_argument("path", help="the backup file to write")
    b.add_argument("--uploads", default=None, metavar="DIR",
                   help="then copy the uploads (uploads.dir of the configuration) missing in DIR")
    b.add_argument("--recordings", default=None, metavar="DIR",
                   help="then copy the finished video recordings (video.recordings_dir) missing in DIR")
    rs = store_command("restore", "put a backup in place of the store (gateway stopped); seq keeps increasing")
    rs.add_argument("path", help="the backup file to restore")
    rs.add_argument("--uploads", default=None, metavar="DIR",
                    help="also copy the uploads backed up in DIR back (those missing) into uploads.dir")
    rs.add_argument("--recordings", default=None, metavar="DIR",
                    help="also copy the video recordings backed up in DIR back (those missing) into video.recordings_dir")
    rs.add_argument("--seq-floor", type=int, default=0, metavar="SEQ",
                    help="new events get seqs above this too (the last seq consoles saw, if the old store is lost)")

    a = sub.add_parser("audit", help="check the audit chain; export audit rows signed").add_subparsers(
        dest="audit_command", required=True)
    av = _store_args(a.add_parser("verify", help="walk the audit chain; exit 1 naming the first row edited, "
                                  "inserted or deleted"))
    av.add_argument("--heads", default=None, metavar="FILE",
                    help="the chain heads file (default: audit.heads_file of the configuration)")
    ae = _store_args(a.add_parser("export", help="write the rows of [--since, --until) as JSON Lines, "
                                  "signed with HMAC (key: audit.export_key_file or audit.export_key)"))
    ae.add_argument("path", help="the file to write")
    ae.add_argument("--since", default=None, help="ISO 8601 date or time, UTC unless it says (default: the first row)")
    ae.add_argument("--until", default=None, help="ISO 8601 date or time, excluded (default: now)")
    ax = _store_args(a.add_parser("verify-export", help="check an export's signature and chain"))
    ax.add_argument("path", help="the export file")

    def client(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        c.add_argument("--url", default=os.environ.get("DISPATCH_URL", DEFAULT_URL))
        c.add_argument("--token", default=os.environ.get("DISPATCH_TOKEN"))
        c.add_argument("--ca-file", default=os.environ.get("DISPATCH_CA_FILE"), metavar="PEM",
                       help="trust only the CAs in this file for a wss:// URL (default: the system's)")
        return c

    c = client("call", "place a call and follow it until it ends")
    c.add_argument("target", help="SIP URI or directory name")
    c.add_argument("--session", default=None, help="incident session id to attach the call to")
    c.add_argument("--hangup-after", type=float, default=None, metavar="SECONDS",
                   help="hang up this long after the call connects")
    e = client("events", "print events as JSON lines")
    e.add_argument("--since", type=int, default=None, help="replay events after this seq first")
    r = client("rpc", "send one request and print its result")
    r.add_argument("method")
    r.add_argument("params", nargs="?", default="{}", help="JSON object")
    k = client("kpi", "print the two indicators (normal operation, timeliness) over a window")
    k.add_argument("--since", required=True, help="ISO 8601 time, or how long ago: 30m, 24h, 7d")
    k.add_argument("--until", default=None, help="ISO 8601 time, or how long ago (default: now)")
    k.add_argument("--group-by", choices=("hour", "day"), default=None)
    k.add_argument("--json", action="store_true", help="the whole kpi.get result as JSON")
    k.add_argument("--db", default=None, help="read this store file instead (no gateway needed; read-only)")
    k.add_argument("--config", default=None, help="read the store this configuration names instead")
    return p


def _store_args(c: argparse.ArgumentParser) -> argparse.ArgumentParser:
    c.add_argument("--config", default=None, help="TOML file naming the store (gateway.data_dir, store.path)")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    c.add_argument("--db", default=None, help="the store's SQLite file (instead of the configuration)")
    return c


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command in ("backup", "restore"):
        return _store_command(args)
    if args.command == "kpi" and (args.db or args.config):
        return _kpi_offline(args)
    if args.command == "audit":
        from gateway.audit.cli import audit_command

        return audit_command(args)
    if not args.token:
        print("dispatch-gateway: --token or DISPATCH_TOKEN is required", file=sys.stderr)
        return 2
    from gateway.logs import setup_logging

    setup_logging("warning", "console", stream=sys.stderr)  # stdout carries only results
    try:
        return asyncio.run(_CLIENT_COMMANDS[args.command](args))
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # RemoteError, Disconnected, OSError: one line, not a traceback
        print(f"dispatch-gateway: {err}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import run
    from gateway.config import dev_token_banner, load_config
    from gateway.exposure import check_exposure
    from gateway.logs import config_secrets, setup_logging

    try:
        config = load_config(args.config, os.environ, args.overrides)
        check_exposure(config)  # before anything binds or a dev token is printed
    except ConfigError as err:
        print(f"dispatch-gateway: configuration error: {err}", file=sys.stderr)
        return 2
    setup_logging(config.gateway.log_level, config.gateway.log_format, secrets=config_secrets(config))
    banner = dev_token_banner(config)
    if banner:
        print(banner, flush=True)

    async def main_task() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(config, stop)

    from gateway.ports import PortInUse
    from video.errors import JanusProcessError

    try:
        asyncio.run(main_task())
    except (PortInUse, JanusProcessError) as err:  # a port taken; Janus missing or not starting
        print(f"dispatch-gateway: cannot start: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


def load_command_config(args: argparse.Namespace) -> Any:
    """The configuration of a store command (--config, --set), or None after printing why not."""
    from gateway.config import load_config

    try:
        return load_config(args.config, os.environ, args.overrides)
    except ConfigError as err:
        print(f"dispatch-gateway: configuration error: {err}", file=sys.stderr)
        return None


def _store_command(args: argparse.Namespace) -> int:
    from gateway.backup import BackupError, backup, copy_recordings, copy_uploads, restore

    config = None
    files = [(copy, getattr(args, opt), where) for copy, opt, where in
             ((copy_uploads, "uploads", "uploads_dir"), (copy_recordings, "recordings", "recordings_dir"))
             if getattr(args, opt) is not None]
    if args.db is None or files:  # --db alone needs no configuration
        config = load_command_config(args)
        if config is None:
            return 2
    db = args.db if args.db is not None else config.store_path
    try:
        if args.command == "backup":  # the database first: every file its rows name is then copied
            summary = backup(db, args.path)
            for copy, dest, where in files:
                summary.update(copy(getattr(config, where), dest))
        else:
            summary = restore(args.path, db, seq_floor=args.seq_floor)
            for copy, src, where in files:
                summary.update(copy(src, getattr(config, where)))
        _print(summary)
        return 0
    except BackupError as err:
        print(f"dispatch-gateway: {err}", file=sys.stderr)
        return 1


async def _connect(args: argparse.Namespace) -> Any:
    from gateway.client import GatewayClient

    return await GatewayClient.connect(args.url, args.token, client_name="dispatch-gateway-cli",
                                       reconnect=False, ca_file=args.ca_file)


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


async def _call(args: argparse.Namespace) -> int:
    client = await _connect(args)
    try:
        await client.subscribe(client.hello.get("seq", 0))
        params: dict[str, Any] = {"target": args.target}
        if args.session:
            params["session_id"] = args.session
        call = await client.call("call.dial", **params)
        _print({"dialed": call})
        hangup: asyncio.TimerHandle | None = None
        async for ev in client.events():
            data = ev.get("data", {})
            if ev.get("type") != "call.state" or data.get("call_id") != call["call_id"]:
                continue
            _print(ev)
            if data.get("state") == "connected" and args.hangup_after and hangup is None:
                hangup = asyncio.get_running_loop().call_later(
                    args.hangup_after,
                    lambda: asyncio.ensure_future(client.call("call.hangup", call_id=call["call_id"])))
            if data.get("state") == "ended":
                return 0 if data.get("answered_at") else 3
        return 1
    finally:
        await client.close()


async def _events(args: argparse.Namespace) -> int:
    client = await _connect(args)
    try:
        await client.subscribe(args.since if args.since is not None else client.hello.get("seq", 0))
        async for ev in client.events():
            _print(ev)
        return 0
    finally:
        await client.close()


async def _rpc(args: argparse.Namespace) -> int:
    try:
        params = json.loads(args.params)
    except ValueError as err:
        print(f"dispatch-gateway: params are not JSON: {err}", file=sys.stderr)
        return 2
    if not isinstance(params, dict):
        print("dispatch-gateway: params must be a JSON object", file=sys.stderr)
        return 2
    client = await _connect(args)
    try:
        _print(await client.call(args.method, **params))
        return 0
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def _kpi(args: argparse.Namespace) -> int:
    from gateway.kpi.text import as_text, when

    params: dict[str, Any] = {"since": when(args.since)}
    if args.until:
        params["until"] = when(args.until)
    if args.group_by:
        params["group_by"] = args.group_by
    client = await _connect(args)
    try:
        result = await client.call("kpi.get", **params)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
    if args.json:
        _print(result)
    else:
        print(as_text(result), flush=True)
    return 0


def _kpi_offline(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.kpi.offline import figures, parse_when
    from gateway.kpi.text import as_text

    try:
        config = load_config(args.config, os.environ, [])
        since = parse_when(args.since)
        until = parse_when(args.until) if args.until else None
        result = asyncio.run(figures(args.db or config.store_path, config.kpi, since, until, args.group_by))
    except ConfigError as err:
        print(f"dispatch-gateway: configuration error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a missing file, a store without the kpi tables, a bad window
        print(f"dispatch-gateway: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False) if args.json else as_text(result), flush=True)
    return 0


_CLIENT_COMMANDS = {"call": _call, "events": _events, "rpc": _rpc, "kpi": _kpi}

if __name__ == "__main__":
    sys.exit(main())
