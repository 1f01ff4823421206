// The incidents (sessions) the console knows, kept by session.list at each (re)subscription and
// by `session.state` events; the selected one is the current incident every view works in (a
// call dialled, a broadcast or an SMS sent from another view goes into it).
import { signal } from "@preact/signals";
import type { GatewayEvent } from "../protocol/envelope";
import { call, onEvent, readyCount } from "./connection";

export interface Incident {
  session_id: string;
  title: string | null;
  state: "open" | "closed" | string;
  created_at: string | null;
  closed_at: string | null;
  created_by: string | null;
}

export const incidents = signal<ReadonlyMap<string, Incident>>(new Map());
/** The incident in the URL (#/incidents/<session_id>): a reload or a shared link shows it. */
function incidentInHash(): string | null {
  const m = /^#\/incidents\/([^/]+)$/.exec(globalThis.location?.hash ?? "");
  return m ? decodeURIComponent(m[1]) : null;
}

export const selectedIncident = signal<string | null>(incidentInHash());

globalThis.addEventListener?.("hashchange", () => {
  const id = incidentInHash();
  if (id !== null) selectedIncident.value = id;
});

selectedIncident.subscribe((id) => {
  const loc = globalThis.location;
  const onIncidents = loc !== undefined && (loc.hash === "" || loc.hash === "#" || loc.hash.startsWith("#/incidents"));
  if (!onIncidents || !globalThis.history) return;
  const want = id === null ? "#/incidents" : `#/incidents/${encodeURIComponent(id)}`;
  if (loc.hash !== want) globalThis.history.replaceState(null, "", want);
});

function merge(list: Incident[]): void {
  const next = new Map(incidents.value);
  for (const s of list) next.set(s.session_id, { ...next.get(s.session_id), ...s });
  incidents.value = next;
}

export function sessionFromEvent(e: GatewayEvent): Incident | null {
  if (e.type !== "session.state") return null;
  const d = e.data as Partial<Incident>;
  const id = d.session_id ?? e.session_id;
  if (typeof id !== "string") return null;
  return {
    session_id: id,
    title: d.title ?? null,
    state: d.state ?? "open",
    created_at: d.created_at ?? null,
    closed_at: d.closed_at ?? null,
    created_by: d.created_by ?? null,
  };
}

export async function loadIncidents(state: "open" | "closed"): Promise<void> {
  const r = (await call("session.list", { state })) as { sessions?: Incident[] };
  merge(r.sessions ?? []);
}

/** Started once by the shell: follows the events and reloads after each reconnect. */
export function followIncidents(): () => void {
  const offEvents = onEvent(
    (e) => {
      const s = sessionFromEvent(e);
      if (s) merge([s]);
    },
    { replay: true }, // incidents of the history, closed ones too
  );
  const offReady = readyCount.subscribe((n) => {
    if (n > 0) loadIncidents("open").catch(() => undefined); // a failure: the next reconnect retries
  });
  return () => {
    offEvents();
    offReady();
    incidents.value = new Map();
    selectedIncident.value = null;
  };
}
