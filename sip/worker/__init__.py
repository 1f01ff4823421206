"""The SIP worker process: one pjsua2 Endpoint, driven over stdin/stdout (framed by sip/ipc.py).

Everything in this folder runs inside a worker process (or the probe process), the only place
pjsua2 runs; the gateway side (sip/supervisor.py, sip/worker_process.py) never imports it, and
importing this package imports nothing but decides which pjsua2 its modules will import
(pjsua2_choice.py: the source build or the wheel). Its modules:

- process.py   the process's threads and main loop: `Worker` (the main thread's loop, the command
               queue, what the stdin reader thread may call), `reader_loop`, `main`. The one module
               where this process's threads meet.
- endpoint.py  the pjsua2 Endpoint, its transport, codecs and accounts (`Worker.start`)
- commands.py  the command handlers (`Worker.cmd_*`, replies, `CommandError`)
- calls.py     the call lifecycle on the main thread: per-call audio ports, inbound calls, the end
               of a call and the graveyard (docs/design.md, "Audio port teardown", "Call object
               teardown")
- streams.py   broadcast streams: one port per stream, fanned out to its calls by the bridge
- pjcalls.py   the pjsua2 Endpoint/Call/Account subclasses and the audio ports
- io_budget.py which new calls fit pjlib's I/O queue (pure): an INVITE that does not is refused
               before pjsua opens a socket for it (calls.py, docs/design.md "I/O keys of a worker")
- writer.py    the stdout writer thread; probe.py the capacity probe; causes.py how a call
               ended (pure); log_budget.py how much pjsua may write to the worker's log (pure)

Usage::

    python -m sip.worker                          # serve: first stdin message {"config": {...}}
    python -m sip.worker --probe                  # print {"ok_calls": n} per call, then exit

Why the probe: the pjsua2-python wheel is compiled with a fixed PJSUA_MAX_CALLS; libInit accepts
any larger ``maxCalls``, and the call past the compiled limit then either fails with PJ_ETOOMANY or
(measured with 2.15.1: maxCalls > compiled limit) trips a pjsua assertion that aborts the process.
So the probe (probe.py) runs in its own throw-away process with maxCalls=64 (or what the supervisor
can use: `--probe-limit`, the calls its RTP port range carries), makes outgoing
calls towards a local UDP socket that never answers, and prints ``{"ok_calls": n}`` after each
call that succeeded. The parent takes the last n it read, whether the probe ended cleanly or
aborted. Workers are then started with maxCalls = that n, and refuse a dial themselves at that
count (``no-capacity``), so a worker never reaches the aborting path.
"""

from .pjsua2_choice import choose as _choose_pjsua2

_choose_pjsua2()
