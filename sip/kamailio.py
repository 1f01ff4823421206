"""Kamailio in front of the SIP workers: the process that runs it and the front the gateway uses.

The configuration (and why it is what it is) is generated in sip/kamailio_config.py.
`KamailioProcess` runs any kamailio.cfg (also used by the test registrar in
tests/peers/kamailio.py); `KamailioFront` writes the front's files, runs it and reloads its
worker list; `sip_options_ping` is the readiness probe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from sip.config import SipConfig
from sip.kamailio_config import (
    CTL_SOCKET,
    KamailioError,
    _check_host,
    _check_port,
    _hostport,
    parse_ds_list,
    render_config,
    render_dispatcher_list,
)
from sip.lifeline import ChildRecord, end_marked, exited, preexec_die_with_parent, terminate_child

log = structlog.get_logger("sip.kamailio")


# --------------------------------------------------------------------------------------------
# SIP OPTIONS probe (readiness)


RESTART_MIN_S = 1.0  # first wait before the front is started again after it exited
RESTART_MAX_S = 10.0

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
                rc = self._proc.returncode
                await self.stop()  # its output drained (bounded), whatever it forked ended
                raise KamailioError(f"kamailio exited with {rc}: {_tail(self.log)}")
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
        """SIGTERM the main process (it stops its children), SIGKILL its group after timeout.
        A main process that died without stopping them (kill -9, a crash) leaves the processes
        it forked running, holding the SIP port, with no parent but init: those (its process
        group, with the config path in their command line) are ended too."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None

        async def orphans() -> None:
            left = await asyncio.to_thread(end_marked, str(self.cfg_path), proc.pid, timeout,
                                           f"kamailio {self._name} exited")
            if left:
                log.warning("kamailio.orphans_ended", name=self._name, pid=proc.pid, pids=left)

        if await terminate_child(proc, timeout, self._drain, orphans):
            log.warning("kamailio.killed", name=self._name, pid=proc.pid)
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
        self._record: ChildRecord | None = None
        self._watch: asyncio.Task[None] | None = None  # restarts Kamailio when it exits on its own

    @classmethod
    def from_config(
        cls, config: SipConfig, workers: Sequence[tuple[str, int]] | None = None, **options: object
    ) -> KamailioFront:
        """The front for `[sip]`: listens on host:port; workers default to every worker address."""
        if workers is None:
            workers = [config.worker_address(i) for i in range(config.max_workers)]
        options.setdefault("max_ringing_per_source", config.max_ringing_per_source)
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
        self._record = record
        await self._spawn(ready_timeout, check=True)
        self._watch = asyncio.get_running_loop().create_task(self._supervise(ready_timeout), name="kamailio-front-watch")

    async def _spawn(self, ready_timeout: float, *, check: bool = False) -> None:
        assert self.run_dir is not None
        proc = KamailioProcess(
            self.run_dir / "kamailio.cfg", self.host, self.port, kamailio_bin=self.kamailio_bin,
            kamcmd_bin=self.kamcmd_bin, name="front", record=self._record,
        )
        if check:
            await proc.check()
        self.process = proc
        try:
            await proc.start(ready_timeout)
        except BaseException:
            self.process = None
            await proc.stop()
            raise

    async def _supervise(self, ready_timeout: float) -> None:
        """Start Kamailio again when it exits on its own (killed, crashed): the front is the
        gateway's one SIP address, inbound calls need it. Its files on disk are current (the
        last update_workers), so the new one dispatches to the same workers."""
        delay = RESTART_MIN_S
        while True:
            proc = self.process
            if proc is None or proc._proc is None:
                return
            rc = await exited(proc._proc)  # the main process, not its pipes (its children hold them)
            log.warning("kamailio.exited", name="front", pid=proc.pid, rc=rc)
            await proc.stop()  # its log drained, its pidfile removed
            self.process = None
            while self.process is None:
                await asyncio.sleep(delay)
                try:
                    await self._spawn(ready_timeout)
                    log.info("kamailio.restarted", name="front", pid=self.pid)
                    delay = RESTART_MIN_S
                except KamailioError as exc:
                    log.warning("kamailio.restart-failed", name="front", error=str(exc), retry_s=delay)
                    delay = min(delay * 2, RESTART_MAX_S)

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
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        proc, self.process = self.process, None
        if proc is not None:
            await proc.stop()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
