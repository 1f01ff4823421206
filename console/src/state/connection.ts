// The signed-in console: one ConsoleClient, what hello said (principal, role), the link's state,
// and the events held (EventLog), exposed as signals the views read. Views call the gateway
// through `call` and test a command against the role with `can` (roles from the schema).
import { batch, computed, signal } from "@preact/signals";
import { ConsoleClient, type LinkState } from "../protocol/client";
import type { Result } from "../protocol/core";
import type { GatewayEvent, HelloResult } from "../protocol/envelope";
import { EventLog } from "../protocol/eventlog";
import { METHODS, type Method, type MethodParams } from "../protocol/generated";

export const link = signal<LinkState>("idle");
export const linkWhy = signal<string | undefined>(undefined);
export const hello = signal<HelloResult | null>(null);
export const log = new EventLog();
/** Bumped whenever `log` changes: a view that reads it re-renders with the new events. */
export const eventsVersion = signal(0);
/** Bumped on every (re)subscription: views reload what is not an event stream (lists). */
export const readyCount = signal(0);

let client: ConsoleClient | null = null;
let token: string | null = null;
const eventHandlers = new Set<(e: GatewayEvent) => void>();

export const online = computed(() => link.value === "open");

/** Whether the signed-in role may call `method` (docs/protocol.schema.json's roles). */
export function can(method: Method): boolean {
  const role = hello.value?.role;
  return role !== undefined && METHODS[method].roles.includes(role);
}

export function call<M extends Method>(method: M, params: MethodParams[M]): Promise<Result> {
  if (client === null) return Promise.reject(new Error("not signed in"));
  return client.call(method, params);
}

/** Sends a binary media frame (protocol/media.ts packFrame); false while offline. */
export function sendBinary(frame: ArrayBuffer): boolean {
  return client?.sendBinary(frame) ?? false;
}

const binaryHandlers = new Set<(frame: ArrayBuffer) => void>();

/** Incoming binary media frames; returns the unsubscribe. */
export function onBinary(handler: (frame: ArrayBuffer) => void): () => void {
  binaryHandlers.add(handler);
  return () => binaryHandlers.delete(handler);
}

/** Live events (after they are in `log`); returns the unsubscribe. With `replay`, first every
 * event already held, in seq order: a follower started after the first subscription's replay
 * (a view mounted later) sees the history too, each event once. */
export function onEvent(handler: (e: GatewayEvent) => void, opts: { replay?: boolean } = {}): () => void {
  eventHandlers.add(handler);
  if (opts.replay) for (const e of log.all()) handler(e);
  return () => eventHandlers.delete(handler);
}

/** The map tiles the gateway names (config.json `map_tiles`, `http.console_map_tiles`); null: none. */
export const mapTiles = signal<string | null>(null);

export async function controlUrl(): Promise<string> {
  const res = await fetch("config.json", { cache: "no-store" });
  const body = (await res.json()) as { control_url?: string; error?: string; map_tiles?: string };
  mapTiles.value = body.map_tiles ?? null;
  if (!res.ok || !body.control_url) throw new Error(body.error ?? `config.json: HTTP ${res.status}`);
  return body.control_url;
}

/** Connects with `token`; resolves once subscribed, rejects when refused. Reconnects by itself
 * afterwards. */
export function signIn(url: string, secret: string): Promise<HelloResult> {
  signOut();
  const c = new ConsoleClient({ url, token: secret });
  client = c;
  token = secret;
  let pendingEvents = 0;
  return new Promise((resolve, reject) => {
    c.listen({
      state: (s, why) =>
        batch(() => {
          link.value = s;
          linkWhy.value = why;
          if (s === "refused") reject(new Error(why ?? "refused"));
        }),
      hello: (h) => (hello.value = h),
      binary: (frame) => {
        for (const h of binaryHandlers) h(frame);
      },
      ready: (h) => {
        readyCount.value += 1;
        resolve(h);
      },
      reset: () => {
        log.clear();
        eventsVersion.value += 1;
      },
      event: (e) => {
        if (!log.add(e)) return;
        for (const h of eventHandlers) h(e);
        // One re-render per burst (a replay brings thousands), not one per event.
        if (pendingEvents++ === 0) {
          queueMicrotask(() => {
            pendingEvents = 0;
            eventsVersion.value += 1;
          });
        }
      },
    });
    c.start();
  });
}

export function signOut(): void {
  client?.stop();
  client = null;
  token = null;
  batch(() => {
    hello.value = null;
    link.value = "idle";
    log.clear();
    eventsVersion.value += 1;
  });
}

/** GET a file of the http port that needs the console's token (an upload, a recording:
 * docs/protocol.md, "Uploads"); the page's own origin, so its CSP allows it. */
export async function authFetch(path: string): Promise<Blob> {
  if (token === null) throw new Error("not signed in");
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.blob();
}

/** For tests and diagnostics: the last seq the console holds. */
export function lastSeq(): number | null {
  return client?.lastSeq ?? null;
}
