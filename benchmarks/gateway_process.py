"""The servers the benchmarks measure, each in its own process, and what is read of them from /proc.

`GatewayProcess`: `python -m gateway.cli serve` on free loopback ports (store and logs under a
work dir, JSON logs to a file, one dispatcher token); `BareProcess`: benchmarks/control_bare.py.
Both start through one `_launch` (start, wait for the started log line) and stop with SIGTERM, then
SIGKILL of their own process group. Used by benchmarks.control_channel, uploads, video, terminals.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-dispatcher-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- small helpers --------------------------------------------------------------------------------


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# Where the benchmarks' gateways take their SIP and RTP ports: clear of the soak's defaults
# (benchmarks/soak.py: RTP from 30000, its gateway's and Janus's blocks up to 36999 and 52000-52999),
# which are not all bound at every moment, so "free now" is not enough.
PORT_RANGE = (37000, 52000)


def free_port_block(span: int, tcp: bool = True) -> int:
    """A base port whose `span` next ports are free on UDP (and TCP when `tcp`), in PORT_RANGE."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(PORT_RANGE[0], PORT_RANGE[1] - span)
        if all(_port_free(base + k, socket.SOCK_DGRAM) and (not tcp or _port_free(base + k, socket.SOCK_STREAM))
               for k in range(span)):
            return base
    raise RuntimeError("no free port block found")


def proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return round(int(f.read().split()[1]) * PAGE / 2**20, 1)
    except OSError:
        return None


def proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except OSError:
        return None


def runq_wait_s(pid: int) -> float | None:
    """Seconds the process's main thread (its event loop) has been runnable but not running: time
    the other processes on the cores took from it (/proc/PID/schedstat, second field, in ns)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raise_fd_limit(need: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _toml_str(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the gateway process --------------------------------------------------------------------------


class GatewayProcess:
    """`python -m gateway.cli serve` on free loopback ports, stderr (JSON logs) to a file."""

    def __init__(self, workdir: Path, log_level: str, profile: str | None = None,
                 extra: dict[str, str] | None = None) -> None:
        self.extra = extra or {}  # more --set values (they win over the ones below)
        self.workdir = workdir
        self.profile = profile
        self.log_path = workdir / "gateway.log"
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.http_port = 0
        self.worker_pids: list[int] = []

    def start(self, timeout: float = 60.0) -> None:
        sip_base = free_port_block(30)
        rtp_base = free_port_block(1000, tcp=False)
        sets = {
            "gateway.data_dir": str(self.workdir / "data"),  # strings as is, like tests/gateway/conftest.py
            "gateway.log_format": "json",
            "gateway.log_level": self.log_level,
            "control.host": "127.0.0.1",
            "control.port": "0",
            # every client comes from 127.0.0.1: the per-address limit (default 64) would refuse them
            "control.max_connections": "100000",
            "control.max_connections_per_source": "100000",
            # one principal drives every client: its request budget is the whole load's
            "control.request_budget.dispatcher": "{rate = 1000000, burst = 1000000}",
            "http.host": "127.0.0.1",
            "http.port": "0",
            "sip.host": "127.0.0.1",
            "sip.worker_host": "127.0.0.1",
            "sip.port": str(sip_base),
            "sip.worker_base_port": str(sip_base + 10),
            "sip.rtp_port_base": str(rtp_base),
            "sip.max_workers": "1",
            "sip.log_dir": str(self.workdir / "sip-logs"),
            "auth.dev_tokens": "false",
            "auth.tokens": "{%s = {principal = \"bench\", role = \"dispatcher\"}}" % _toml_str(TOKEN),
        }
        sets.update(self.extra)
        prof = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        argv = [sys.executable, *prof, "-m", "gateway.cli", "serve"]
        for k, v in sets.items():
            argv += ["--set", f"{k}={v}"]
        deadline = time.monotonic() + timeout
        started = self._launch(argv, "gateway.started", "gateway", deadline)
        self.url, self.http_port = started["control"], int(started["http_port"])
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        self.worker_pids = children(self.proc.pid)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready in {timeout}s; see {self.log_path}")

    def _launch(self, argv: list[str], event: str, what: str, deadline: float) -> dict:
        """Start `argv` (its output in log_path) and wait for its `event` log line, which it returns."""
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}; see {self.log_path}")
            started = self._find_log(event)
            if started:
                return started
            time.sleep(0.1)
        raise TimeoutError(f"{what} did not start in time; see {self.log_path}")

    def _find_log(self, event: str) -> dict | None:
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                if event in line:
                    with contextlib.suppress(ValueError):
                        obj = json.loads(line)
                        if obj.get("event") == event:
                            return obj
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def loop_lag(self, name: str = "dispatch_loop_lag_seconds") -> dict[float, float] | None:
        """The gateway's loop-lag histogram `name` now (/metrics, gateway/loop_lag.py): {upper bound
        in s: cumulative count}; None when it cannot be read (the bare server has none)."""
        if not self.http_port:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        out = {}
        for line in text.splitlines():
            if line.startswith(name + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        return out or None

    def sample(self) -> dict[str, Any]:
        return {
            "rss_mb": proc_rss_mb(self.pid),
            "cpu_s": proc_cpu_s(self.pid),
            "runq_wait_s": runq_wait_s(self.pid),
            "worker_rss_mb": sum(filter(None, (proc_rss_mb(p) for p in self.worker_pids))) or None,
            "worker_cpu_s": sum(filter(None, (proc_cpu_s(p) for p in self.worker_pids))),
        }

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM, wait; SIGKILL (this process group only: ours) if it does not stop."""
        if self.proc is None:
            return {}
        t0 = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return {"exit_code": self.proc.returncode, "stop_s": round(time.monotonic() - t0, 2),
                "killed": killed}

    def log_summary(self) -> dict[str, Any]:
        levels: collections.Counter[str] = collections.Counter()
        bad: collections.Counter[str] = collections.Counter()
        non_json = 0
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    non_json += 1
                    continue
                if not isinstance(obj, dict):
                    non_json += 1
                    continue
                lvl = str(obj.get("level", "?"))
                levels[lvl] += 1
                if lvl in ("warning", "error", "critical", "exception"):
                    bad[f"{lvl}:{obj.get('event')}"] += 1
        return {"levels": dict(levels), "warnings_errors": dict(bad.most_common(20)),
                "non_json_lines": non_json}


class BareProcess(GatewayProcess):
    """benchmarks/control_bare.py (plain `websockets`, nothing behind it) in its own process."""

    def start(self, timeout: float = 60.0) -> None:
        argv = [sys.executable, "-m", "benchmarks.control_bare", "--port", "0"]
        started = self._launch(argv, "bare.started", "bare server", time.monotonic() + timeout)
        self.url = started["control"]
