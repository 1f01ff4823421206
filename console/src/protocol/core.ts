// The sans-I/O parts of the console's protocol client: request/response correlation by id and
// the event cursor (dedupe by seq, where to resume). No WebSocket, no timer: tested in
// core.test.ts with plain values; client.ts moves frames between these and the socket.
import type { Method, MethodParams } from "./generated";
import {
  DISCONNECTED,
  DISCONNECTED_CODE,
  RemoteError,
  type ErrorBody,
  type GatewayEvent,
  type Incoming,
  type RequestId,
} from "./envelope";

export type Result = Record<string, unknown>;

interface Pending {
  method: Method;
  resolve: (r: Result) => void;
  reject: (e: RemoteError) => void;
}

/** Matches replies to requests by id (replies may come out of order: docs/protocol.md). */
export class Correlator {
  private nextId = 1;
  private readonly pending = new Map<RequestId, Pending>();

  /** The frame to send and the promise of its reply. */
  request<M extends Method>(method: M, params: MethodParams[M]): { id: RequestId; frame: string; reply: Promise<Result> } {
    const id = this.nextId++;
    const frame = JSON.stringify({ jsonrpc: "2.0", id, method, params });
    const reply = new Promise<Result>((resolve, reject) => this.pending.set(id, { method, resolve, reject }));
    return { id, frame, reply };
  }

  /** Settles the request a reply answers; false when the frame is no reply of ours. */
  receive(msg: Incoming): boolean {
    if (msg.kind !== "result" && msg.kind !== "error") return false;
    if (msg.id === null) return false;
    const p = this.pending.get(msg.id);
    if (p === undefined) return false;
    this.pending.delete(msg.id);
    if (msg.kind === "result") p.resolve(msg.result);
    else p.reject(toRemoteError(msg.error));
    return true;
  }

  /** The link is gone: every request in flight fails with `disconnected`. */
  failAll(message = "connection lost before the reply"): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(new RemoteError(DISCONNECTED_CODE, DISCONNECTED, `${p.method}: ${message}`));
  }

  get inFlight(): number {
    return this.pending.size;
  }
}

export function toRemoteError(e: ErrorBody): RemoteError {
  return new RemoteError(e.code, e.data.reason, e.message, e.data.details ?? {});
}

export type CursorVerdict =
  | { kind: "new"; event: GatewayEvent }
  | { kind: "duplicate" }
  | { kind: "overflow"; resumeSinceSeq: number };

/**
 * Where the console is in the gateway's durable event stream. `accept` passes each event once:
 * a replay after a reconnect (subscribed since the last seq seen) or a repeat is a duplicate.
 * `events.overflow` (the gateway cut the subscription) is no event of the stream: it asks for a
 * new subscription from `resume_since_seq`.
 */
export class EventCursor {
  private last: number | null = null;

  constructor(private readonly history: number) {}

  get lastSeq(): number | null {
    return this.last;
  }

  accept(event: GatewayEvent): CursorVerdict {
    if (event.type === "events.overflow") {
      const resume = Number(event.data.resume_since_seq ?? event.seq);
      return { kind: "overflow", resumeSinceSeq: Number.isFinite(resume) ? resume : (this.last ?? 0) };
    }
    if (this.last !== null && event.seq <= this.last) return { kind: "duplicate" };
    this.last = event.seq;
    return { kind: "new", event };
  }

  /** `since_seq` for `events.subscribe` after a hello that said the store's last seq is
   * `helloSeq`: the last seq seen (nothing lost, nothing twice), or on the first connection the
   * last `history` events (the incidents' timelines). */
  sinceSeq(helloSeq: number): number {
    if (this.last !== null) return this.last;
    return Math.max(0, helloSeq - this.history);
  }

  /** The gateway's stream is not the one we followed (`seq-ahead`: a store restored from an
   * older backup): forget where we were; the caller clears what it showed. */
  reset(): void {
    this.last = null;
  }
}
