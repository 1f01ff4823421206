"""Kamailio in front of the SIP workers: config generation and the process that runs it.

When the gateway runs more than one SIP worker, users still see one SIP address
(`sip.host:sip.port`). Kamailio listens there and spreads new dialogs over the workers with the
dispatcher module; in-dialog requests follow the Record-Route it inserts.

Choices, and why:
- tm-based (stateful) proxy: failover needs a transaction (`t_on_failure` -> `ds_next_dst`).
- Round robin (dispatcher algorithm 4). Least-loaded (algorithm 10) needs the dialog module to
  track call load per destination and still knows nothing about a worker's real capacity; the
  supervisor already decides how many workers run, so an even spread is the right default.
- Dead workers: every destination is probed with OPTIONS (`ds_ping_interval`); one failed probe
  makes it inactive, one good probe makes it active again. Between probes, a worker that gives no
  provisional answer within `worker_timeout_ms` or answers 5xx is skipped for the next one, and
  on timeout marked inactive at once.
- Requests coming from a worker's address (workers may use Kamailio as outbound proxy) are relayed
  to their Request-URI.
- `ctl` with a unix socket in the run directory, so `update_workers()` can reload the list.

`render_config()` and `render_dispatcher_list()` are pure; `KamailioProcess` runs any kamailio.cfg
(also used by the test registrar in tests/peers/kamailio.py); `KamailioFront` ties them together.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
import re
import secrets
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from sip.config import SipConfig
from sip.errors import SipError
from sip.lifeline import ChildRecord, preexec_die_with_parent

log = structlog.get_logger("sip.kamailio")

MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
)

FRONT_MODULES = (
    "kex", "corex", "tm", "tmx", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
    "sanity", "ctl", "dispatcher",
)

DISPATCH_SET = 1
CTL_SOCKET = "kamailio_ctl"
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


class KamailioError(SipError):
    """Kamailio could not be configured, started or reloaded: the public SIP address is down."""

    reason = "sip-unavailable"


def find_modules_dir(candidates: Sequence[str] = MODULE_DIRS) -> str:
    """The directory holding Kamailio's modules (tm.so, dispatcher.so, ...)."""
    for d in candidates:
        if os.path.isfile(os.path.join(d, "tm.so")):
            return d
    raise KamailioError(f"no Kamailio module directory found (looked in {', '.join(candidates)})")


def _check_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise KamailioError(f"not an IP address: {host!r}") from None


def _check_port(port: int) -> int:
    if not isinstance(port, int) or not 0 < port < 65536:
        raise KamailioError(f"not a port: {port!r}")
    return port


def _hostport(host: str, port: int) -> str:
    host = _check_host(host)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{_check_port(port)}"


def _quote(value: str) -> str:
    """A Kamailio cfg string literal; we only ever embed paths and fixed tokens."""
    if any(c in value for c in '"\\\n\r'):
        raise KamailioError(f"unsupported character in config value {value!r}")
    return f'"{value}"'


def render_dispatcher_list(workers: Sequence[tuple[str, int]], setid: int = DISPATCH_SET) -> str:
    """The dispatcher.list file: one destination per worker, `duid` = worker index."""
    lines = ["# setid destination flags priority attributes"]
    for i, (host, port) in enumerate(workers):
        lines.append(f"{setid} sip:{_hostport(host, port)} 0 0 duid=w{i}")
    return "\n".join(lines) + "\n"


def render_config(
    listen_host: str,
    listen_port: int,
    workers: Sequence[tuple[str, int]],
    *,
    run_dir: str | os.PathLike[str] = "/run/dispatch-gateway",
    modules_dir: str | None = None,
    children: int = 4,
    ping_interval: int = 2,
    worker_timeout_ms: int = 2000,
    ring_timeout_ms: int = 120000,
    debug: int = 2,
) -> str:
    """A kamailio.cfg for the dispatcher front.

    `workers` is written to `<run_dir>/dispatcher.list` by `KamailioFront` (see
    `render_dispatcher_list`); the cfg only references that file and uses the list to recognise
    requests coming from a worker (`ds_is_from_list`).
    """
    listen = _hostport(listen_host, listen_port)
    for host, port in workers:
        _hostport(host, port)
    run_dir = os.fspath(run_dir)
    ctl_path = os.path.join(run_dir, CTL_SOCKET)
    if len(ctl_path) > _UNIX_PATH_MAX:
        raise KamailioError(f"run directory path too long for a unix socket: {ctl_path}")
    mpath = modules_dir or find_modules_dir()
    loads = "\n".join(f'loadmodule "{m}.so"' for m in FRONT_MODULES)
    return f"""#!KAMAILIO
# Generated by sip/kamailio.py -- dispatch gateway front. Do not edit; it is rewritten at start.

####### Global parameters #########
debug={int(debug)}
log_stderror=yes
log_prefix="{{$mt $hdr(CSeq) $ci}} "
memdbg=5
memlog=5
children={int(children)}
auto_aliases=no
listen=udp:{listen}
alias=udp:{listen}
rundir={_quote(run_dir)}
dns=no
rev_dns=no
dns_try_ipv6=no
use_dns_cache=no
server_header="Server: dispatch-gateway-front"
user_agent_header="User-Agent: dispatch-gateway-front"

####### Modules ########
mpath={_quote(mpath)}
{loads}

modparam("ctl", "binrpc", {_quote("unix:" + ctl_path)})

# tm: fr_timer bounds non-INVITE transactions (and dispatcher probes); INVITEs to workers get
# their own timers in route[TOWORKER].
modparam("tm", "fr_timer", {int(worker_timeout_ms)})
modparam("tm", "fr_inv_timer", {int(ring_timeout_ms)})
modparam("tm", "failure_reply_mode", 3)

modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)

modparam("dispatcher", "list_file", {_quote(os.path.join(run_dir, "dispatcher.list"))})
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:front@{listen}")
modparam("dispatcher", "ds_ping_interval", {int(ping_interval)})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_reply_codes", "class=2;class=3;class=4")

####### Routing logic ########
request_route {{
    route(REQINIT);

    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}

    route(WITHINDLG);

    # retransmissions of initial requests are absorbed by tm
    if (!is_method("ACK")) {{
        if (t_precheck_trans()) {{
            t_check_trans();
            exit;
        }}
        t_check_trans();
    }}

    # a preloaded Route pointing at us (a worker using the front as outbound proxy)
    remove_hf("Route");

    if (is_method("INVITE|SUBSCRIBE|REFER|NOTIFY")) {{
        record_route();
    }}

    if (ds_is_from_list("{DISPATCH_SET}")) {{
        route(FROMWORKER);
    }}

    if (is_method("OPTIONS") && uri==myself && $rU==$null) {{
        sl_send_reply("200", "OK");
        exit;
    }}

    route(TOWORKER);
}}

route[REQINIT] {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (!sanity_check("17895", "7")) {{
        xlog("L_WARN", "malformed request from $si:$sp\\n");
        exit;
    }}
}}

route[WITHINDLG] {{
    if (!has_totag()) return;
    if (loose_route()) {{
        route(RELAY);
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    sl_send_reply("404", "Not here");
    exit;
}}

# a worker sends a request outward: relay it to its Request-URI
route[FROMWORKER] {{
    if (uri==myself) {{
        # the gateway calling its own public address: dispatch like any inbound request
        route(TOWORKER);
    }}
    t_set_fr({int(ring_timeout_ms)}, 30000);
    route(RELAY);
    exit;
}}

# a new request from outside: pick a worker, fail over on timeout or 5xx
route[TOWORKER] {{
    if (!ds_select_dst("{DISPATCH_SET}", "4")) {{
        xlog("L_ERR", "no worker available for $rm $ru\\n");
        sl_send_reply("503", "No Worker Available");
        exit;
    }}
    xlog("L_INFO", "dispatch $rm $ru to $du\\n");
    t_set_fr({int(ring_timeout_ms)}, {int(worker_timeout_ms)});
    t_on_failure("WORKER_FAILED");
    route(RELAY);
    exit;
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

failure_route[WORKER_FAILED] {{
    if (t_is_canceled()) exit;
    if (t_branch_timeout() && !t_branch_replied()) {{
        xlog("L_WARN", "worker $du timed out, marking inactive\\n");
        ds_mark_dst("ip");
    }} else if (!t_check_status("5[0-9][0-9]")) {{
        exit;
    }}
    if (ds_next_dst()) {{
        xlog("L_INFO", "failover $rm $ru to $du\\n");
        t_set_fr({int(ring_timeout_ms)}, {int(worker_timeout_ms)});
        t_on_failure("WORKER_FAILED");
        t_relay();
        exit;
    }}
    if (t_branch_timeout() && !t_branch_replied()) {{
        t_reply("503", "No Worker Available");
    }}
}}
"""


# --------------------------------------------------------------------------------------------
# SIP OPTIONS probe (readiness)


class _ReplyProtocol(asyncio.DatagramProtocol):
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        text = data.decode("utf-8", "replace")
        if text.startswith("SIP/2.0 ") and self.call_id in text and not self.reply.done():
            self.reply.set_result(text.split("\r\n", 1)[0])


async def sip_options_ping(host: str, port: int, timeout: float = 0.5) -> str | None:
    """Send one OPTIONS over UDP; the status line of the answer, or None without one."""
    loop = asyncio.get_running_loop()
    call_id = secrets.token_hex(8)
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _ReplyProtocol(call_id), local_addr=(host, 0)
    )
    try:
        lhost, lport = transport.get_extra_info("sockname")[:2]
        target = _hostport(host, port)
        branch = "z9hG4bK" + secrets.token_hex(8)
        msg = (
            f"OPTIONS sip:{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {_hostport(lhost, lport)};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{_hostport(lhost, lport)}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{target}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        transport.sendto(msg.encode(), (host, port))
        try:
            return await asyncio.wait_for(proto.reply, timeout)
        except TimeoutError:
            return None
    finally:
        transport.close()


# --------------------------------------------------------------------------------------------
# The process


class KamailioProcess:
    """One `kamailio -DD -E -f <cfg>` child: log drained, readiness by OPTIONS, RPC by kamcmd."""

    def __init__(
        self,
        cfg_path: str | os.PathLike[str],
        host: str,
        port: int,
        *,
        kamailio_bin: str = "kamailio",
        kamcmd_bin: str = "kamcmd",
        ctl_socket: str | os.PathLike[str] | None = None,
        log_lines: int = 2000,
        name: str = "kamailio",
        record: ChildRecord | None = None,
    ) -> None:
        self.cfg_path = Path(cfg_path)
        self.record = record  # pidfile while it runs (sip/lifeline.py)
        self.host = host
        self.port = port
        self.kamailio_bin = kamailio_bin
        self.kamcmd_bin = kamcmd_bin
        self.ctl_socket = Path(ctl_socket) if ctl_socket else self.cfg_path.parent / CTL_SOCKET
        self.log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._name = name
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def check(self) -> None:
        """`kamailio -c`: raise KamailioError with its output if the cfg does not parse."""
        rc, out = await _run(self.kamailio_bin, "-c", "-f", str(self.cfg_path))
        if rc != 0:
            raise KamailioError(f"kamailio -c failed ({rc}): {_tail(out)}")

    async def start(self, ready_timeout: float = 10.0) -> None:
        if self._proc is not None:
            raise KamailioError("already started")
        self._proc = await asyncio.create_subprocess_exec(
            self.kamailio_bin, "-DD", "-E", "-f", str(self.cfg_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            # SIGTERM when we die, even by kill -9: its main process then stops its children.
            preexec_fn=preexec_die_with_parent(signal.SIGTERM),
        )
        if self.record is not None:
            self.record.write(self._proc.pid, str(self.cfg_path))
        self._drain = asyncio.create_task(self._drain_log(self._proc.stdout))
        log.info("kamailio.started", name=self._name, pid=self._proc.pid, cfg=str(self.cfg_path))
        deadline = time.monotonic() + ready_timeout
        while True:
            if self._proc.returncode is not None:
                await self._drain
                raise KamailioError(
                    f"kamailio exited with {self._proc.returncode}: {_tail(self.log)}"
                )
            if await sip_options_ping(self.host, self.port, timeout=0.2):
                break
            if time.monotonic() > deadline:
                await self.stop()
                raise KamailioError(f"kamailio not answering OPTIONS on {self.host}:{self.port}")
        log.info("kamailio.ready", name=self._name, pid=self._proc.pid, port=self.port)

    async def _drain_log(self, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while raw := await stream.readline():
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(line)
            if " ERROR: " in line or " CRITICAL: " in line or " ALERT: " in line:
                log.warning("kamailio.log", name=self._name, line=line)

    async def rpc(self, *command: str, timeout: float = 5.0) -> str:
        """Run `kamcmd -s unix:<ctl> <command...>` and return its output."""
        rc, out = await _run(
            self.kamcmd_bin, "-s", f"unix:{self.ctl_socket}", *command, timeout=timeout
        )
        if rc != 0:
            raise KamailioError(f"kamcmd {' '.join(command)} failed ({rc}): {_tail(out)}")
        return "\n".join(out)

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the main process (it stops its children), SIGKILL its group after timeout."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("kamailio.kill", name=self._name, pid=proc.pid)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session, started above
                except ProcessLookupError:
                    pass
                await proc.wait()
        if self._drain:
            try:
                await asyncio.wait_for(self._drain, 2)
            except TimeoutError:
                self._drain.cancel()
            self._drain = None
        if self.record is not None:
            self.record.remove()
        log.info("kamailio.stopped", name=self._name, pid=proc.pid, rc=proc.returncode)
        return proc.returncode


async def _run(*argv: str, timeout: float = 30.0) -> tuple[int, list[str]]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError:
        raise KamailioError(f"{argv[0]} not found") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise KamailioError(f"{' '.join(argv)} timed out") from None
    return proc.returncode or 0, out.decode("utf-8", "replace").splitlines()


def _tail(lines: Sequence[str] | collections.deque[str], n: int = 15) -> str:
    return "\n".join(list(lines)[-n:])


# --------------------------------------------------------------------------------------------
# The front


class KamailioFront:
    """Kamailio as the gateway's one SIP address, dispatching to the workers.

    front = KamailioFront("127.0.0.1", 5060, [("127.0.0.1", 5070), ("127.0.0.1", 5080)])
    await front.start(run_dir)        # writes kamailio.cfg + dispatcher.list, waits for OPTIONS
    await front.update_workers([...]) # rewrites dispatcher.list, dispatcher.reload
    await front.stop()
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        workers: Sequence[tuple[str, int]],
        *,
        kamailio_bin: str = "kamailio",
        kamcmd_bin: str = "kamcmd",
        **cfg_options: object,
    ) -> None:
        self.host = _check_host(listen_host)
        self.port = _check_port(listen_port)
        self.workers = [(_check_host(h), _check_port(p)) for h, p in workers]
        self.kamailio_bin = kamailio_bin
        self.kamcmd_bin = kamcmd_bin
        self._cfg_options = cfg_options
        self.run_dir: Path | None = None
        self.process: KamailioProcess | None = None

    @classmethod
    def from_config(
        cls, config: SipConfig, workers: Sequence[tuple[str, int]] | None = None, **options: object
    ) -> KamailioFront:
        """The front for `[sip]`: listens on host:port; workers default to every worker address."""
        if workers is None:
            workers = [config.worker_address(i) for i in range(config.max_workers)]
        return cls(config.host, config.port, workers, kamailio_bin=config.kamailio_bin, **options)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log(self) -> list[str]:
        return list(self.process.log) if self.process else []

    def write_files(self, run_dir: str | os.PathLike[str]) -> Path:
        """Write kamailio.cfg and dispatcher.list into run_dir; the cfg path."""
        run = Path(run_dir).resolve()
        run.mkdir(parents=True, exist_ok=True)
        cfg = render_config(self.host, self.port, self.workers, run_dir=run, **self._cfg_options)
        _write_atomic(run / "dispatcher.list", render_dispatcher_list(self.workers))
        _write_atomic(run / "kamailio.cfg", cfg)
        return run / "kamailio.cfg"

    async def start(self, run_dir: str | os.PathLike[str], ready_timeout: float = 10.0,
                    record: ChildRecord | None = None) -> None:
        if self.process is not None:
            raise KamailioError("front already started")
        cfg = self.write_files(run_dir)
        self.run_dir = cfg.parent
        proc = KamailioProcess(
            cfg, self.host, self.port, kamailio_bin=self.kamailio_bin,
            kamcmd_bin=self.kamcmd_bin, name="front", record=record,
        )
        await proc.check()
        self.process = proc
        try:
            await proc.start(ready_timeout)
        except BaseException:
            self.process = None
            await proc.stop()
            raise

    async def update_workers(self, workers: Sequence[tuple[str, int]]) -> None:
        """Replace the destination list and make the running Kamailio reload it."""
        if self.process is None or self.run_dir is None:
            raise KamailioError("front not started")
        new = [(_check_host(h), _check_port(p)) for h, p in workers]
        _write_atomic(self.run_dir / "dispatcher.list", render_dispatcher_list(new))
        await self.process.rpc("dispatcher.reload")
        self.workers = new
        log.info("kamailio.workers_updated", workers=len(new))

    async def destinations(self) -> dict[str, str]:
        """`dispatcher.list` as Kamailio sees it: {"sip:host:port": flags}, e.g. "AP" or "IP"."""
        if self.process is None:
            raise KamailioError("front not started")
        return parse_ds_list(await self.process.rpc("dispatcher.list"))

    async def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            await proc.stop()


_DS_URI = re.compile(r"^\s*URI:\s*(\S+)\s*$")
_DS_FLAGS = re.compile(r"^\s*FLAGS:\s*(\S+)\s*$")


def parse_ds_list(text: str) -> dict[str, str]:
    """Destinations and their state flags from `kamcmd dispatcher.list` output."""
    result: dict[str, str] = {}
    uri: str | None = None
    for line in text.splitlines():
        if m := _DS_URI.match(line):
            uri = m.group(1)
        elif (m := _DS_FLAGS.match(line)) and uri:
            result[uri] = m.group(1)
            uri = None
    return result


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
