// The console's WebSocket client: hello with a token, requests by id, the event stream resumed
// from the last seq after every reconnect (nothing lost, nothing twice), reconnect with backoff,
// an application ping that notices a silent dead link. The logic it needs lives in core.ts and
// backoff.ts (sans-I/O, unit-tested); this file only moves frames and owns the timers.
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff";
import { Correlator, EventCursor, toRemoteError, type Result } from "./core";
import { DISCONNECTED, RemoteError, parseFrame, type GatewayEvent, type HelloResult } from "./envelope";
import type { Method, MethodParams } from "./generated";

export type LinkState = "idle" | "connecting" | "open" | "reconnecting" | "refused" | "closed";

export interface ClientOptions {
  url: string;
  token: string;
  clientName?: string;
  /** Events replayed on the first connection (the timelines' history). */
  history?: number;
  backoff?: BackoffOptions;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  WebSocketImpl?: typeof WebSocket;
}

export interface ClientListeners {
  state?: (state: LinkState, why?: string) => void;
  hello?: (hello: HelloResult) => void;
  /** After each (re)subscription: what to load again (lists that are not events). */
  ready?: (hello: HelloResult, resumed: boolean) => void;
  event?: (event: GatewayEvent) => void;
  /** The stream we followed is gone (seq-ahead): drop every event shown. */
  reset?: () => void;
  notification?: (method: string, params: Record<string, unknown>) => void;
  /** A binary (media) frame: unpack it with media.ts. */
  binary?: (frame: ArrayBuffer) => void;
}

const PING_INTERVAL_MS = 15_000;
const PING_TIMEOUT_MS = 10_000;

export class ConsoleClient {
  private ws: WebSocket | null = null;
  private correlator = new Correlator();
  private readonly cursor: EventCursor;
  private readonly backoff: Backoff;
  private readonly listeners: ClientListeners[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pinger: ReturnType<typeof setInterval> | null = null;
  private stopped = false;
  private _state: LinkState = "idle";
  private _hello: HelloResult | null = null;
  private everReady = false;

  constructor(private readonly opts: ClientOptions) {
    this.cursor = new EventCursor(opts.history ?? 5_000);
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF);
  }

  get state(): LinkState {
    return this._state;
  }

  get hello(): HelloResult | null {
    return this._hello;
  }

  get lastSeq(): number | null {
    return this.cursor.lastSeq;
  }

  listen(l: ClientListeners): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "signed out");
    this.correlator.failAll("signed out");
    this.setState("closed");
  }

  /** One request; rejects with RemoteError (`disconnected` when the link is not up or drops). */
  call<M extends Method>(method: M, params: MethodParams[M]): Promise<Result> {
    if (this._state !== "open" || this.ws === null) {
      return Promise.reject(new RemoteError(-1, DISCONNECTED, `${method}: not connected`));
    }
    return this.send(method, params);
  }

  /** A binary (media) frame (media.ts packFrame); false when the link is not up (dropped: audio
   * is not queued across a reconnect). */
  sendBinary(frame: ArrayBuffer): boolean {
    if (this._state !== "open" || this.ws === null) return false;
    this.ws.send(frame);
    return true;
  }

  private send<M extends Method>(method: M, params: MethodParams[M]): Promise<Result> {
    const { frame, reply } = this.correlator.request(method, params);
    this.ws?.send(frame);
    return reply;
  }

  private emit<K extends keyof ClientListeners>(key: K, ...args: Parameters<NonNullable<ClientListeners[K]>>): void {
    for (const l of [...this.listeners]) {
      const f = l[key] as ((...a: unknown[]) => void) | undefined;
      f?.(...args);
    }
  }

  private setState(state: LinkState, why?: string): void {
    if (this._state === state) return;
    this._state = state;
    this.emit("state", state, why);
  }

  private connect(): void {
    this.clearTimers();
    this.setState(this.everReady ? "reconnecting" : "connecting");
    const Impl = this.opts.WebSocketImpl ?? WebSocket;
    let ws: WebSocket;
    try {
      ws = new Impl(this.opts.url);
    } catch (e) {
      this.scheduleReconnect(String(e));
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.correlator = new Correlator();
    ws.onopen = () => void this.onOpen(ws);
    ws.onmessage = (m: MessageEvent) => {
      if (ws !== this.ws) return;
      if (typeof m.data === "string") this.onText(m.data);
      else if (m.data instanceof ArrayBuffer) this.emit("binary", m.data);
    };
    ws.onclose = (c: CloseEvent) => {
      if (ws !== this.ws) return;
      this.lost(`closed ${c.code}${c.reason ? ` ${c.reason}` : ""}`);
    };
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  private async onOpen(ws: WebSocket): Promise<void> {
    const correlator = this.correlator;
    try {
      const hello = (await this.send("hello", {
        token: this.opts.token,
        client: this.opts.clientName ?? "dispatch-console",
      })) as unknown as HelloResult;
      if (ws !== this.ws) return;
      this._hello = hello;
      this.emit("hello", hello);
      await this.subscribe(hello);
      if (ws !== this.ws) return;
      this.backoff.reset();
      const resumed = this.everReady;
      this.everReady = true;
      this.setState("open");
      this.startPinger(ws);
      this.emit("ready", hello, resumed);
    } catch (e) {
      if (ws !== this.ws || correlator !== this.correlator) return;
      if (e instanceof RemoteError && e.reason === "not-authenticated") {
        this.refuse(e.message);
      } else if (e instanceof RemoteError && e.reason === "rate-limited") {
        const after = Number(e.details.retry_after_s ?? 1) * 1000;
        this.drop(`rate-limited`, after);
      } else {
        this.drop(e instanceof Error ? e.message : String(e));
      }
    }
  }

  private async subscribe(hello: HelloResult): Promise<void> {
    const since = this.cursor.sinceSeq(hello.seq);
    try {
      await this.send("events.subscribe", { since_seq: since });
    } catch (e) {
      if (!(e instanceof RemoteError)) throw e;
      if (e.reason === "seq-ahead") {
        // Not the stream we followed (a store restored from an older backup): start over.
        this.cursor.reset();
        this.emit("reset");
        await this.send("events.subscribe", { since_seq: this.cursor.sinceSeq(hello.seq) });
      } else if (e.reason === "seq-pruned") {
        await this.send("events.subscribe", { since_seq: 0 }); // everything still stored
      } else {
        throw e;
      }
    }
  }

  private onText(text: string): void {
    const msg = parseFrame(text);
    if (this.correlator.receive(msg)) return;
    if (msg.kind === "event") {
      const verdict = this.cursor.accept(msg.event);
      if (verdict.kind === "new") this.emit("event", verdict.event);
      else if (verdict.kind === "overflow") {
        const ws = this.ws;
        this.send("events.subscribe", { since_seq: verdict.resumeSinceSeq }).catch(() => {
          if (ws === this.ws) this.drop("resubscribe failed"); // a lost link reconnects already
        });
      }
    } else if (msg.kind === "notification") {
      this.emit("notification", msg.method, msg.params);
    } else if (msg.kind === "error" && msg.id === null) {
      console.warn("gateway error without id", toRemoteError(msg.error));
    }
  }

  private startPinger(ws: WebSocket): void {
    const every = this.opts.pingIntervalMs ?? PING_INTERVAL_MS;
    const within = this.opts.pingTimeoutMs ?? PING_TIMEOUT_MS;
    this.pinger = setInterval(() => {
      if (ws !== this.ws) return;
      const dead = setTimeout(() => {
        if (ws === this.ws) this.drop("no answer to ping");
      }, within);
      this.send("ping", {}).then(
        () => clearTimeout(dead),
        () => clearTimeout(dead),
      );
    }, every);
  }

  /** Close this link ourselves (a silent or broken one) and reconnect. */
  private drop(why: string, atLeastMs = 0): void {
    const ws = this.ws;
    this.ws = null;
    try {
      ws?.close(4000, why.slice(0, 100));
    } catch {
      /* closing a socket that never opened */
    }
    this.correlator.failAll();
    this.scheduleReconnect(why, atLeastMs);
  }

  private lost(why: string): void {
    this.ws = null;
    this.correlator.failAll();
    this.scheduleReconnect(why);
  }

  private refuse(why: string): void {
    const ws = this.ws;
    this.ws = null;
    this.clearTimers();
    ws?.close(1000, "refused");
    this.correlator.failAll();
    this.setState("refused", why);
  }

  private scheduleReconnect(why: string, atLeastMs = 0): void {
    this.clearTimers();
    if (this.stopped) return;
    this.setState(this.everReady ? "reconnecting" : "connecting", why);
    const delay = this.backoff.nextAtLeast(atLeastMs);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private clearTimers(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.pinger !== null) clearInterval(this.pinger);
    this.timer = null;
    this.pinger = null;
  }
}
