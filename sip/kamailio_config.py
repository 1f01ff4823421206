"""Kamailio in front of the SIP workers: its configuration, generated (no process, no sockets).

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
  provisional answer within `worker_timeout_ms` is skipped for the next one. A timeout does not
  mark it inactive: pjsip drops what it cannot parse without a word, and one such request per
  worker every probe interval left no worker for anyone (SIP fuzzing).
- Full workers (sip/admission.py): a worker at its inbound share answers 503 Worker Full, one
  with every pjsua slot taken 486; on those (and any 5xx) the next worker is tried and the full
  one stays active. A refusal the gateway's user chose carries the reason phrase DECIDED and is
  passed on. When every worker was full the front answers 503 with Retry-After itself.
- Ringing calls per source (`max_ringing_per_source`): a dialog profile keyed by the source
  address counts its unanswered INVITEs (checked and counted under a per-source lock); past the
  limit the front answers 486 statelessly, so a flood from one address never reaches a worker.
- Requests coming from a worker's address (workers may use Kamailio as outbound proxy) are relayed
  to their Request-URI.
- `ctl` with a unix socket in the run directory, so `update_workers()` can reload the list.
- Requests larger than a worker reads (`MAX_REQUEST_BYTES`) are answered 513 at once: relayed,
  they were copied into shared memory and held while the worker stayed silent, and a flood of
  them exhausted it (every request then failed).

`render_config()` and `render_dispatcher_list()` write the files; `parse_ds_list()` reads the
dispatcher's answer. sip/kamailio.py runs the process.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence

from sip.admission import DECIDED, FAILOVER_STATUS, RETRY_AFTER_S, TOO_MANY_RINGING, WORKER_FULL
from sip.errors import SipError

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
    "sanity", "ctl", "dispatcher", "dialog", "cfgutils",
)

DISPATCH_SET = 1
# A worker (pjsip, PJSIP_MAX_PKT_LEN) reads 4,000 bytes of a datagram and drops the rest; the front
# adds its Via and Record-Route. A larger request can never become a call: refused at once (513)
# before tm copies it into shared memory, where a flood of them starved every other request.
MAX_REQUEST_BYTES = 3500
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
    max_ringing_per_source: int = 0,
    debug: int = 2,
) -> str:
    """A kamailio.cfg for the dispatcher front.

    `workers` is written to `<run_dir>/dispatcher.list` by `KamailioFront` (see
    `render_dispatcher_list`); the cfg only references that file and uses the list to recognise
    requests coming from a worker (`ds_is_from_list`). `max_ringing_per_source` > 0: a source
    address with that many unanswered INVITE dialogs gets 486 (sip/admission.py) at once.
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
    full_code, full_reason = WORKER_FULL
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
# Not class=4: a probe that times out is answered 408 by tm itself, and counted a live worker.
modparam("dispatcher", "ds_ping_reply_codes", "class=2;class=3;code=403;code=404;code=405;code=480;code=486")

# Ringing calls per source address: a dialog profile keyed by the source, left on the 2xx.
modparam("dialog", "profiles_with_value", "ringing")
# ... checked and counted under a lock per source (2^8 locks, hashed by key)
modparam("cfgutils", "lock_set_size", 8)

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
    # larger than a worker reads (MAX_REQUEST_BYTES): refused before tm copies it to shared memory
    if ($ml > {MAX_REQUEST_BYTES} && !ds_is_from_list("{DISPATCH_SET}")) {{
        sl_send_reply("513", "Message Too Large");
        exit;
    }}
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

# a new request from outside: pick a worker, fail over on timeout or a full worker's refusal
route[TOWORKER] {{
    $var(counted) = 0;
    if (!ds_select_dst("{DISPATCH_SET}", "4")) {{
        xlog("L_ERR", "no worker available for $rm $ru\\n");
        sl_send_reply("503", "No Worker Available");
        exit;
    }}
    if (is_method("INVITE")) {{
        route(RINGLIMIT);
    }}
    xlog("L_INFO", "dispatch $rm $ru to $du\\n");
    t_set_fr({int(ring_timeout_ms)}, {int(worker_timeout_ms)});
    t_on_failure("WORKER_FAILED");
    if (!t_relay()) {{
        sl_reply_error();
    }}
    if ($var(counted) == 1) {{
        unlock("$si");
    }}
    exit;
}}

{_ring_limit(max_ringing_per_source)}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

# A worker that does not answer is marked inactive. One that refuses because it is full (its
# inbound share: 503; every pjsua slot taken: 486) or broken (5xx) stays active and the next
# worker is tried; a refusal the gateway's user chose carries the DECIDED reason phrase and goes
# to the caller, as does any other final answer.
failure_route[WORKER_FAILED] {{
    if (t_is_canceled()) exit;
    if (t_branch_timeout() && !t_branch_replied()) {{
        # Not marked inactive here: a worker drops what it cannot parse without a word, so one
        # such request would take a healthy worker out of dispatch. The OPTIONS probes decide.
        xlog("L_WARN", "worker $du timed out\\n");
    }} else if (!t_check_status("^({FAILOVER_STATUS})$") || $T_reply_reason == {_quote(DECIDED)}) {{
        exit;
    }} else {{
        xlog("L_INFO", "worker $du refused $rm ($T_reply_code $T_reply_reason)\\n");
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
    }} else if (t_check_status("{full_code}") && $T_reply_reason == {_quote(full_reason)}) {{
        # every worker is at its inbound share: the gateway's own 503, with when to come back
        # (a relayed 503 would become a bare 500, RFC 3261 16.7)
        append_to_reply("Retry-After: {RETRY_AFTER_S}\\r\\n");
        t_reply("{full_code}", {_quote(full_reason)});
    }}
}}
"""


def _ring_limit(limit: int) -> str:
    """route[RINGLIMIT]: refuse an INVITE from a source that has `limit` ringing calls; else
    count this one under its source until a 2xx answers it (or the dialog ends)."""
    if limit <= 0:
        return "route[RINGLIMIT] {\n    return;\n}"
    code, reason = TOO_MANY_RINGING
    return f"""route[RINGLIMIT] {{
    if (has_totag()) return;
    # the source's lock is held until the INVITE is relayed (route[TOWORKER]): the check and the
    # count are one step for all of Kamailio's children
    lock("$si");
    if (get_profile_size("ringing", "$si", "$var(ringing)") && $var(ringing) >= {int(limit)}) {{
        unlock("$si");
        xlog("L_DBG", "$si has $var(ringing) ringing calls: {code}\\n");
        sl_send_reply("{code}", {_quote(reason)});
        exit;
    }}
    $var(counted) = 1;
    dlg_manage();
    set_dlg_profile("ringing", "$si");
    $dlg_var(ringing_src) = $si;
    t_on_reply("WORKER_REPLY");
}}

onreply_route[WORKER_REPLY] {{
    # (once: a 2xx is retransmitted until ACKed)
    if (status =~ "^2[0-9][0-9]$" && is_in_profile("ringing", "$dlg_var(ringing_src)")) {{
        unset_dlg_profile("ringing", "$dlg_var(ringing_src)");
    }}
}}"""


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
