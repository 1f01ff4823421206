// The control channel's envelopes (docs/protocol.md, "Envelopes"; docs/protocol.schema.json
// "envelopes"): what goes over the WebSocket, typed. Results are objects defined by the services.
import type { Method, MethodParams, Role } from "./generated";

export type RequestId = number;

export interface Request<M extends Method = Method> {
  jsonrpc: "2.0";
  id: RequestId;
  method: M;
  params: MethodParams[M];
}

/** One stored event (`event` notification params). */
export interface GatewayEvent<D = Record<string, unknown>> {
  seq: number;
  type: string;
  time: string;
  session_id: string | null;
  data: D;
}

export interface ErrorBody {
  code: number;
  message: string;
  data: { reason: string; details?: Record<string, unknown> };
}

export interface HelloResult {
  principal: string;
  role: Role;
  gateway_id: string;
  seq: number;
  protocol: number;
}

export interface SubscribeResult {
  since_seq: number;
  last_seq: number;
}

/** A failure of one request: the gateway's error (`reason`), or the link lost before the reply. */
export class RemoteError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "RemoteError";
  }
}

/** `reason` of a request that was in flight when the connection was lost: it may or may not
 * have run (a *starts work* method runs to its end: repeat it with its idempotency key). */
export const DISCONNECTED = "disconnected";
export const DISCONNECTED_CODE = -1;

export type Incoming =
  | { kind: "result"; id: RequestId; result: Record<string, unknown> }
  | { kind: "error"; id: RequestId | null; error: ErrorBody }
  | { kind: "event"; event: GatewayEvent }
  | { kind: "notification"; method: string; params: Record<string, unknown> }
  | { kind: "garbage"; why: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses one text frame; never throws (a bad frame is `garbage`, logged by the caller). */
export function parseFrame(text: string): Incoming {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return { kind: "garbage", why: "not JSON" };
  }
  if (!isObject(msg) || msg.jsonrpc !== "2.0") return { kind: "garbage", why: "not JSON-RPC 2.0" };
  if ("result" in msg && typeof msg.id === "number" && isObject(msg.result)) {
    return { kind: "result", id: msg.id, result: msg.result };
  }
  if ("error" in msg && isObject(msg.error)) {
    const e = msg.error;
    const data = isObject(e.data) ? e.data : {};
    return {
      kind: "error",
      id: typeof msg.id === "number" ? msg.id : null,
      error: {
        code: typeof e.code === "number" ? e.code : 0,
        message: typeof e.message === "string" ? e.message : "",
        data: {
          reason: typeof data.reason === "string" ? data.reason : "unknown",
          details: isObject(data.details) ? data.details : {},
        },
      },
    };
  }
  if (typeof msg.method === "string" && isObject(msg.params)) {
    const p = msg.params;
    if (msg.method === "event") {
      if (typeof p.seq !== "number" || typeof p.type !== "string") return { kind: "garbage", why: "event without seq or type" };
      return {
        kind: "event",
        event: {
          seq: p.seq,
          type: p.type,
          time: typeof p.time === "string" ? p.time : "",
          session_id: typeof p.session_id === "string" ? p.session_id : null,
          data: isObject(p.data) ? p.data : {},
        },
      };
    }
    return { kind: "notification", method: msg.method, params: p };
  }
  return { kind: "garbage", why: "neither a reply nor a notification" };
}
