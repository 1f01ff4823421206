"""Wiring and lifecycle: start every part in order, stop them in reverse.

Start: leftovers of a killed run reaped, every listening port checked free -> store (+ uploads
dir, half-received files removed) -> http (health, webhooks, uploads) ->
video (Janus instances) -> SMS -> SIP workers (+ Kamailio front) -> terminals -> control channel.
Stop (SIGTERM/SIGINT, see gateway/cli.py): no worker restarted from the first moment ->
control channel (no new commands) -> terminals (offline, newest positions published) -> broadcasts
ended -> SIP (BYE every call, through the front) -> call records flushed -> front (last of the SIP
side, so in-dialog BYEs still route) -> SMS -> video (streams ended, recordings post-processed,
Janus stopped) -> http -> store.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import structlog

from gateway import http, tls
from gateway.audit.heads import ChainHeads
from gateway.broadcast.service import BroadcastService
from gateway.config import Config
from gateway.directory import Directory
from gateway.errors import GatewayError
from gateway.events import EventBus
from gateway.exposure import check_exposure, log_exposure_warnings
from gateway.handlers import register_all, register_conferences, register_feedback, register_kpi, register_terminals
from gateway.kpi import checks as kpi_checks
from gateway.kpi.http import report_routes
from gateway.kpi.service import KpiService
from gateway.limits import throttle_accept_errors
from gateway import gc_tuning, heap_trim, loop_lag
from gateway.memwatch import run_reports, watch_from_env
from gateway.metrics import GatewayCollector, GatewayMetrics, metrics_route, webhook_rejections
from gateway.ports import check_ports
from gateway.protocol import Principal, Registry, RequestContext
from gateway.retention import Retention, RetentionPolicy
from gateway.server import ControlServer, ServerConfig, ServerHooks
from gateway.services.calls import CallService
from gateway.services.conferences import ConferenceService, DialIn
from gateway.services.instructions import InstructionService
from gateway.services.media import MediaService
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from gateway.services.terminals import TerminalService
from gateway.services.video import VideoService
from gateway.services.video_http import recording_routes
from gateway.services.voice import VoiceService
from gateway.console_page import ConsoleConfig, ConsolePage
from gateway.terminal_page import PageConfig, TerminalPage
from sms.factory import make_provider
from gateway.store import Store
from gateway.tasks import OwnedTasks
from gateway.tokens import TokenTable
from gateway.uploads import UploadService
from gateway.uploads.feedback import FeedbackService
from gateway.uploads.http import UploadRoutes
from sip.kamailio import KamailioFront
from sip.lifeline import ChildRecord
from sip.supervisor import SipEvent, SipSupervisor

log = structlog.get_logger(__name__)


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.store_path)
        self.bus = EventBus(self.store, queue_size=config.control.send_queue)
        self.directory = Directory.from_config(config)
        self.uploads = UploadService(self.store, config.uploads, config.uploads_dir,
                                     is_terminal=lambda name: self.directory.terminal(name) is not None)
        self.retention = Retention(self.store, self.bus, RetentionPolicy.from_config(config.store),
                                   uploads=self.uploads)
        self.audit_heads = ChainHeads(
            self.store.audit_head,
            None if config.store_path == ":memory:" else config.audit.heads_path(config.gateway.data_dir),
            config.audit.head_interval_s)
        self.sessions = SessionService(self.store, self.bus)
        self.calls = CallService(self.store, self.bus, self.sessions, self.directory,
                                 ring_timeout_s=config.calls.ring_timeout_s,
                                 dial_timeout_s=config.calls.dial_timeout_s)
        self.broadcasts = BroadcastService(self.store, self.bus, self.sessions, self.directory,
                                           config.broadcast, data_dir=config.gateway.data_dir)
        self.sms = SmsService(self.store, self.bus, self.sessions, self.directory, config.sms,
                              make_provider(config.sms, config.gateway.log_level))
        self.terminals = TerminalService(self.store, self.bus, self.directory, config.terminals)
        self.video = VideoService(self.bus, self.sessions, config.video,
                                  data_dir=config.gateway.data_dir, terminals=self.terminals)
        self.retention.recordings_dir = self.video.recordings_dir  # pruned with the events
        self.voice = VoiceService(self.bus, self.sessions, self.directory, self.video,
                                  dial_timeout_s=config.calls.dial_timeout_s)
        self.instructions = InstructionService(self.store, self.sessions, self.sms, self.terminals,
                                               self.directory)
        self.media = MediaService(self.calls, self.broadcasts)
        self.conferences = ConferenceService(self.bus, self.sessions, self.calls, media=self.media,
                                             recordings_dir=Path(config.gateway.data_dir) / "conferences",
                                             dial_in=DialIn(config.calls.conference_dial_in_prefix,
                                                            config.calls.conference_pin_attempts,
                                                            f"{config.sip.host}:{config.sip.port}",
                                                            config.calls.conference_pin_timeout_s),
                                             voice=self.voice)
        self.calls.on_ended.append(self.media.call_ended)
        self.sip = SipSupervisor(config.sip, on_event=self._route_sip_event,
                                 on_audio=self.media.on_audio)
        self.kpi = KpiService(self.store, config.kpi, config.gateway.data_dir, self._kpi_checks())
        self.sip.on_worker_change = lambda up, cause: self.kpi.prober.observe("sip", up, cause)
        self.front: KamailioFront | None = None
        self._front_dir: str | None = None
        # While the front runs: its PID and config path, for the next start to reap after kill -9.
        self._front_record = ChildRecord(Path(config.gateway.data_dir) / "run" / "kamailio-front.pid")
        self.registry = Registry()
        register_all(self.registry, bus=self.bus, directory=self.directory, sessions=self.sessions,
                     calls=self.calls, media=self.media, broadcasts=self.broadcasts, sms=self.sms,
                     video=self.video, voice=self.voice)
        register_terminals(self.registry, self.terminals, self.instructions)
        register_feedback(self.registry, FeedbackService(self.store, self.sessions, self.terminals))
        register_conferences(self.registry, self.conferences)
        register_kpi(self.registry, self.kpi)
        # /metrics (gateway/metrics/): counters fed here, states read when scraped.
        self.metrics = GatewayMetrics(methods=self.registry.methods)
        self.metrics.registry.register(GatewayCollector(self, self.metrics))
        self.kpi.export(self.metrics)  # the two indicators as gauges
        self.store.add_listener(self.metrics.on_events)
        self.sms.on_send = lambda outcome, s: self.metrics.observe_sms_send(config.sms.provider, outcome, s)
        c = config.control
        self.control = ControlServer(
            self.registry, self._authenticate,
            ServerHooks(current_seq=lambda: self.bus.last_seq, audit=self._audit, audit_in_writes=True,
                        idempotency=self.store, on_authenticated=self._on_authenticated,
                        on_closed=self.terminals.on_closed, on_ping=self.terminals.on_ping,
                        on_request=self.metrics.observe_request),
            ServerConfig(host=c.host, port=c.port, path=c.path, gateway_id=config.gateway.id,
                         ping_interval=c.ping_interval_s, ping_timeout=c.ping_timeout_s,
                         max_size=c.max_frame_bytes, max_in_flight=c.max_in_flight,
                         send_queue_size=c.send_queue, media_queue_size=c.media_queue,
                         hello_timeout=c.hello_timeout_s, overflow_close_s=c.overflow_close_s,
                         max_connections=c.max_connections,
                         max_connections_per_source=c.max_connections_per_source,
                         max_hello_failures=c.max_hello_failures,
                         hello_failures_burst=c.hello_failures_burst,
                         hello_failures_per_s=1.0 / c.hello_failure_refill_s,
                         request_budgets=c.request_budget,
                         ssl=tls.server_context(c.tls_cert, c.tls_key) if c.tls_cert else None),
        )
        self._http: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._tokens = TokenTable(config.auth.tokens)
        for info in config.auth.tokens.values():  # such a token may say hello, nothing terminal.*
            if info.role == "terminal" and self.directory.terminal(info.principal) is None and not config.auth.generated:
                log.warning("auth.terminal-token-unbound", principal=info.principal,
                            why="no [[directory.endpoint]] of kind terminal has this name")

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.config
        # A front left running by a gateway killed with -9 (its lifeline failed) goes first;
        # then a port still taken is refused with the key that names it, before anything binds.
        throttle_accept_errors(asyncio.get_running_loop())  # out of fds: one log line a minute
        await asyncio.to_thread(self._front_record.reap)
        await asyncio.to_thread(self.video.pool.reap)  # Janus left by a gateway killed with -9
        check_ports(cfg)
        if cfg.store_path != ":memory:":
            Path(cfg.store_path).parent.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        await self.uploads.start()  # its directory; what a killed run left half-received goes
        await self.retention.start()  # prunes now, then every store.prune_interval_s
        self._stack.push_async_callback(self.retention.stop)
        await self.audit_heads.start()  # the audit chain's head, logged and filed (gateway/audit/heads.py)
        self._stack.push_async_callback(self.audit_heads.stop)  # records the last head, store still open
        self._stack.push_async_callback(self._stop_http)
        # Janus: started before the rest, stopped after it (streams end, recordings finish).
        await self.video.start()
        self._stack.push_async_callback(self.video.stop)
        self._stack.push_async_callback(self.voice.stop)  # bridges end before Janus stops
        # Webhooks listen before the outbox sends anything: no receipt may find nobody home.
        routes = list(self.sms.provider.webhook_routes() if self.sms.provider else [])
        webhooks = webhook_rejections(self.metrics, [path for _, path, *_ in routes])
        routes.append(metrics_route(self.metrics, cfg.metrics.token))
        # Uploads: the control channel's tokens, its budget of failed authentications, its audit;
        # video recordings are downloaded the same way.
        uploads = UploadRoutes(self.uploads, self._authenticate, self.control.hello_throttle,
                               audit=self.store.add_audit)
        routes += uploads.routes()
        routes += recording_routes(self.video.recordings_dir, uploads.principal, audit=self.store.add_audit)
        routes += report_routes(self.kpi, uploads.principal, audit=self.store.add_audit)
        h = cfg.http
        if h.terminal_page:  # the reference field terminal at /terminal/
            routes += (await self._terminal_page()).routes()
        if h.console:  # the dispatch console at /console/ (console/dist, built by scripts/install.sh)
            console = ConsoleConfig(control_path=cfg.control.path, control_tls=cfg.control.tls_cert is not None,
                                    control_url=h.console_control_url, map_tiles=h.console_map_tiles)
            routes += (await ConsolePage.load(
                console, lambda: self.control.port if self.control.listening else None)).routes()
        self._http = await http.start(h.host, h.port,
                                      {"store": self.store.readiness, "sip": self._sip_readiness,
                                       **({"video": self.video.readiness} if cfg.video.enabled else {})},
                                      routes,
                                      http.HttpLimits(h.header_timeout_s, h.keepalive_s, h.max_connections,
                                                      h.max_connections_per_source, h.health_reserve),
                                      tls.server_context(h.tls_cert, h.tls_key) if h.tls_cert else None,
                                      middlewares=[webhooks])
        await self.sms.start()  # recovers the outbox before anything new is accepted
        self._stack.push_async_callback(self.sms.stop)
        await self.sip.start()
        self._stack.push_async_callback(self._stop_sip)  # the front (below) stops in there, last
        self.calls.start(self.sip)
        self._stack.push_async_callback(self.conferences.stop)  # members hung up before SIP stops
        self.broadcasts.start_service(self.sip)
        if cfg.sip.proxied and cfg.sip.proxy == "auto":
            # Kamailio's control socket path must stay short (108 bytes): a run dir under /tmp.
            self._front_dir = tempfile.mkdtemp(prefix="gw-kamailio-")
            self.front = KamailioFront.from_config(cfg.sip)
            await self.front.start(self._front_dir, record=self._front_record)
        await self.terminals.start()  # the roster's last positions, then the presence timer
        self._stack.push_async_callback(self.terminals.stop)  # after the control channel stopped
        await self.instructions.start()  # deadlines and SMS still to queue, read back from the store
        self._stack.push_async_callback(self.instructions.stop)
        await self.control.start()
        self._stack.push_async_callback(self.control.stop)
        # Last up, first down: the run starts with every part up (or not), and a stop is not
        # recorded as parts failing one after the other.
        await self.kpi.start()
        self._stack.push_async_callback(self.kpi.stop)
        housekeeping = OwnedTasks()
        housekeeping.spawn(heap_trim.run(cfg.gateway.heap_trim_interval_s), name="heap-trim")
        housekeeping.spawn(loop_lag.run(self.metrics.loop_lag.observe, self.metrics.loop_lag_own.observe),
                           name="loop-lag")
        self._stack.push_async_callback(housekeeping.cancel_all)
        if (watch := watch_from_env({"gateway": self})) is not None:  # gateway/memwatch.py: off by default
            debug = OwnedTasks()
            debug.spawn(run_reports(*watch, lambda r: log.info("memwatch", **r)), name="memwatch")
            self._stack.push_async_callback(debug.cancel_all)
        log.info("gateway.started", gateway_id=cfg.gateway.id, control=self.control.url,
                 http_port=self.http_port, sip=f"{cfg.sip.host}:{cfg.sip.port}",
                 calls_per_worker=self.sip.calls_per_worker, front=self.front is not None)

    async def stop(self) -> None:
        self.sip.quiesce()  # from now on a worker that exits is not restarted
        self.terminals.quiesce()  # terminals' connections closing now: offline "gateway-stopped"
        await self._stack.aclose()
        log.info("gateway.stopped")

    def _route_sip_event(self, event: SipEvent) -> None:
        """Paging calls belong to broadcasts, conferences' console ports and trunks to conferences;
        everything else (inbound calls too) to calls."""
        if self.broadcasts.owns(event.call_id):
            self.broadcasts.on_sip_event(event)
        elif event.kind == "trunk":
            self.conferences.on_trunk_event(event)
        elif self.conferences.owns(event.call_id):
            self.conferences.on_port_event(event)
        else:
            self.calls.on_sip_event(event)

    async def _stop_sip(self) -> None:
        try:
            await self.broadcasts.stop_service()  # broadcasts end first: their calls get a BYE
            await self.sip.stop()  # BYE every call; the workers report them ended
            await self.calls.stop()  # those reports stored and published, then the rest closed
        finally:
            if self.front is not None:  # last: the workers' BYEs follow its Record-Route
                await self.front.stop()
            if self._front_dir is not None:
                shutil.rmtree(self._front_dir, ignore_errors=True)

    def _kpi_checks(self) -> dict[str, kpi_checks.Check]:
        """The probes of the parts this configuration runs (the store's is the heartbeat)."""
        cfg, timeout = self.config, self.config.kpi.probe_timeout_s / 2
        out = {"sip": kpi_checks.sip_check(self.sip, timeout)}
        if cfg.sip.proxied and cfg.sip.proxy == "auto":
            out["front"] = kpi_checks.front_check(cfg.sip.host, cfg.sip.port, timeout)
        if self.sms.provider is not None:
            out["sms"] = kpi_checks.sms_check(self.sms.provider, cfg.sms.twilio.api_base, timeout)
        if cfg.video.enabled:
            out["media"] = kpi_checks.media_check(self.video.ready)
        out["disk"] = kpi_checks.disk_check(cfg.gateway.data_dir, cfg.kpi.min_free_bytes)
        return out

    async def _terminal_page(self) -> TerminalPage:
        cfg, beat = self.config, self.config.terminals.heartbeat_interval_s
        page = PageConfig(control_path=cfg.control.path, control_tls=cfg.control.tls_cert is not None,
                          control_url=cfg.http.terminal_control_url, heartbeat_interval_s=beat,
                          report_interval_s=min(5.0, max(cfg.terminals.location_interval_s, beat / 2)),
                          uploads_max_bytes=cfg.uploads.max_bytes)
        return await TerminalPage.load(page, lambda: self.control.port if self.control.listening else None)

    async def _stop_http(self) -> None:
        if self._http is not None:
            await self._http.cleanup()

    async def _on_authenticated(self, conn: Any) -> None:
        await self.terminals.on_authenticated(conn)  # presence first: the terminal is online
        self.video.on_connected(conn)  # then a stream or a bridge it was asked for, asked again
        self.voice.on_connected(conn)

    async def _sip_readiness(self) -> str | None:
        why = self.sip.readiness()
        if why is None and self.front is not None and not (self.front.process and self.front.process.running):
            return "the Kamailio front (sip.proxy = auto) is not running"
        return why

    @property
    def http_port(self) -> int:
        return http.bound_port(self._http)

    # -- control-channel hooks -------------------------------------------------------------
    def _authenticate(self, token: str) -> Principal | None:
        return self._tokens.principal(token)

    async def _audit(self, ctx: RequestContext, method: str, params: dict,
                     outcome: dict | GatewayError) -> None:
        error = outcome.reason if isinstance(outcome, GatewayError) else None
        await self.store.add_audit(ctx.principal.name, ctx.principal.role, method, params,
                                   "error" if error else "ok", error)


async def run(config: Config, stop: asyncio.Event) -> None:
    """Run until `stop` is set (signals in the CLI), then shut down gracefully."""
    check_exposure(config)  # ConfigError before anything binds (the CLI checks earlier still)
    log_exposure_warnings(config)  # clear text beyond loopback is allowed: TLS may end in front
    gw = Gateway(config)
    await gw.start()
    gc_tuning.settle_after_startup()  # the process's: collections walk only what is made from now on
    try:
        await stop.wait()
    finally:
        await gw.stop()
