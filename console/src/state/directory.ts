// The directory (directory.list) and the terminals' presence (terminal.list, then
// terminal.presence events), reloaded at each (re)subscription.
import { signal } from "@preact/signals";
import { call, can, onEvent, readyCount } from "./connection";

export interface Endpoint {
  name: string;
  uri: string | null;
  kind: "phone" | "speaker" | "trunk" | "terminal" | string;
  groups: string[];
  display_name: string | null;
  profile: string | null;
  phone: string | null;
}

export interface Zone {
  name: string;
  codec: string;
}

export interface Presence {
  presence: "online" | "offline" | string;
  last_seen: string | null;
}

export const endpoints = signal<Endpoint[]>([]);
export const groups = signal<string[]>([]);
export const zones = signal<Zone[]>([]);
/** broadcast.start's priorities, highest first (broadcast.priorities). */
export const priorities = signal<string[]>([]);
export const presence = signal<ReadonlyMap<string, Presence>>(new Map());

export async function loadDirectory(): Promise<void> {
  const dir = (await call("directory.list", {})) as {
    endpoints?: Endpoint[];
    groups?: string[];
    zones?: Zone[];
    priorities?: string[];
  };
  endpoints.value = dir.endpoints ?? [];
  groups.value = dir.groups ?? [];
  zones.value = dir.zones ?? [];
  priorities.value = dir.priorities ?? [];
  if (!can("terminal.list")) return;
  const next = new Map<string, Presence>();
  let after: string | null = null;
  do {
    const page = (await call("terminal.list", after === null ? { limit: 500 } : { limit: 500, after })) as {
      terminals?: { terminal_id: string; presence: string; last_seen: string | null }[];
      next_after?: string | null;
    };
    for (const term of page.terminals ?? []) next.set(term.terminal_id, { presence: term.presence, last_seen: term.last_seen });
    after = page.next_after ?? null;
  } while (after !== null);
  presence.value = next;
}

export function followDirectory(): () => void {
  const offEvents = onEvent((e) => {
    if (e.type !== "terminal.presence") return;
    const d = e.data as { terminal_id?: string; state?: string; last_seen?: string | null };
    if (typeof d.terminal_id !== "string") return;
    const next = new Map(presence.value);
    next.set(d.terminal_id, { presence: d.state ?? "unknown", last_seen: d.last_seen ?? null });
    presence.value = next;
  });
  const offReady = readyCount.subscribe((n) => {
    if (n > 0) loadDirectory().catch(() => undefined);
  });
  return () => {
    offEvents();
    offReady();
  };
}

/** Case-insensitive match of every word of `query` against an endpoint's fields. */
export function matches(ep: Endpoint, query: string): boolean {
  const hay = [ep.name, ep.display_name, ep.uri, ep.phone, ...ep.groups].filter(Boolean).join(" ").toLowerCase();
  return query
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => hay.includes(w));
}
