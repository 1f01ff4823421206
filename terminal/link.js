// The control channel as a terminal uses it (docs/protocol.md): one WebSocket, JSON-RPC 2.0,
// `hello` first, a `ping` heartbeat at half the gateway's heartbeat interval, and a new
// connection with backoff whenever the link drops — except after a refused token, which is
// never retried (retrying a bad token only spends the address's hello budget).

export const REQUEST_TIMEOUT_MS = 15000;
export const CONNECT_TIMEOUT_MS = 10000; // from the socket's creation to a hello answered
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30000;
export const FATAL = new Set(["not-authenticated", "forbidden"]);

// The delay before reconnect attempt `attempt` (0, 1, ...): exponential, capped, with jitter
// in its upper half so a district's terminals do not all come back in the same instant.
export function backoffDelay(attempt, rand = Math.random) {
  const full = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(full / 2 + (rand() * full) / 2);
}

export class RpcError extends Error {
  constructor(reason, message, details = {}) {
    super(message || reason);
    this.reason = reason;
    this.details = details || {};
  }
}

// states: connecting (detail: {attempt}), online ({resumed}), reconnecting ({delay} ms before the
// next attempt, and the RpcError that made it, if any), rejected (the RpcError), offline (stopped)
export class Link {
  constructor({ url, token, client, heartbeatMs, onState, onHello, onNotify, onEvent }) {
    Object.assign(this, { url, token, client, heartbeatMs });
    this.handlers = { onState, onHello, onNotify, onEvent };
    this.ws = null;
    this.up = false;
    this.stopped = true;
    this.attempt = 0;
    this.hellos = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.timers = { retry: null, beat: null, connect: null };
  }

  start() {
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.connect);
    this._drop(this.ws, 1000);
    if (this.state !== "rejected") this._state("offline");
  }

  // A request; rejects with RpcError (reason "offline" when not connected, "timeout", "disconnected").
  call(method, params = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.up) return Promise.reject(new RpcError("offline"));
    return this._request(this.ws, method, params, timeoutMs);
  }

  _state(state, detail) {
    this.state = state;
    this.handlers.onState?.(state, detail);
  }

  _open() {
    this._state("connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._retry(new RpcError("unreachable", String(err)));
      return;
    }
    this.ws = ws;
    // A connection that neither opens nor fails (packets dropped on a dead mobile network) is
    // given up after CONNECT_TIMEOUT_MS and tried again.
    clearTimeout(this.timers.connect);
    this.timers.connect = setTimeout(() => {
      if (ws !== this.ws || this.up) return;
      ws.onclose = null;
      this._drop(ws, 1000);
      this._closed(ws);
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => this._hello(ws);
    ws.onmessage = (msg) => this._receive(ws, msg.data);
    ws.onclose = () => this._closed(ws);
  }

  async _hello(ws) {
    let result;
    try {
      result = await this._request(ws, "hello", { token: this.token, client: this.client });
    } catch (err) {
      if (ws !== this.ws) return;
      if (FATAL.has(err.reason)) {
        this.stopped = true;
        this._drop(ws, 1000);
        this._state("rejected", err);
      } else {
        const wait = err.reason === "rate-limited" ? (err.details.retry_after_s || 1) * 1000 : null;
        ws.failure = err; // told to the page with the retry
        this._drop(ws, 1000, wait);
      }
      return;
    }
    if (ws !== this.ws) return;
    this.up = true;
    this.attempt = 0;
    const resumed = this.hellos++ > 0;
    this._beat(ws);
    this._state("online", { resumed });
    this.handlers.onHello?.(result, resumed);
  }

  _beat(ws) {
    clearInterval(this.timers.beat);
    this.timers.beat = setInterval(() => {
      if (ws !== this.ws || !this.up) return;
      // A heartbeat not answered in time: the link is dead even if the socket does not know yet.
      this._request(ws, "ping", {}, Math.max(this.heartbeatMs, 5000)).catch((err) => {
        if (err.reason === "timeout") this._drop(ws, 4000);
      });
    }, this.heartbeatMs / 2);
  }

  _request(ws, method, params, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcError("timeout", method));
      }, timeoutMs);
      this.pending.set(id, { ws, resolve, reject, timer });
      try {
        ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new RpcError("disconnected", String(err)));
      }
    });
  }

  _receive(ws, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    if ("id" in msg && ("result" in msg || "error" in msg)) {
      const waiter = this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      clearTimeout(waiter.timer);
      if ("error" in msg) {
        const data = msg.error.data || {};
        waiter.reject(new RpcError(data.reason || "error", msg.error.message, data.details));
      } else {
        waiter.resolve(msg.result);
      }
      return;
    }
    if (ws !== this.ws || typeof msg.method !== "string") return;
    if (msg.method === "event") this.handlers.onEvent?.(msg.params || {});
    else this.handlers.onNotify?.(msg.method, msg.params || {});
  }

  _closed(ws) {
    for (const [id, waiter] of this.pending) {
      if (waiter.ws !== ws) continue;
      clearTimeout(waiter.timer);
      this.pending.delete(id);
      waiter.reject(new RpcError("disconnected"));
    }
    if (ws !== this.ws) return;
    this.up = false;
    clearInterval(this.timers.beat);
    if (!this.stopped) this._retry(ws.failure ?? null, ws.retryAfterMs);
  }

  _retry(err, waitMs) {
    const delay = waitMs ?? backoffDelay(this.attempt++);
    this._state("reconnecting", { delay, error: err });
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(() => {
      if (!this.stopped) this._open();
    }, delay);
  }

  _drop(ws, code, retryAfterMs = null) {
    if (!ws) return;
    ws.retryAfterMs = retryAfterMs ?? undefined;
    // Still connecting or open: its onclose follows (and reconnects); already closing: it came.
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(code);
  }
}
