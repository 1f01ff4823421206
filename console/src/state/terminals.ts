// Terminals for the Terminals view: last positions and trails (terminal.list, terminal.track, then
// terminal.location events), presence (terminal.presence), and the instructions this console sent
// with each terminal's delivery step (terminal.instruction events; the fallback SMS's sms.status,
// whose ref names the instruction). Reloaded at each (re)subscription; events apply once each.
import { signal } from "@preact/signals";
import type { GatewayEvent } from "../protocol/envelope";
import { addFix, type Fix } from "../views/terminals/map";
import { call, can, onEvent, readyCount } from "./connection";

export interface Terminal {
  terminal_id: string;
  display_name: string | null;
  presence: string;
  last_seen: string | null;
  position: Fix | null;
  status: string | null;
  battery: number | null;
}

export interface Delivery {
  state: string;
  sms: string | null;
  error: string | null;
}

export interface Instruction {
  instruction_id: string;
  text: string;
  sent_at: string;
  terminals: ReadonlyMap<string, Delivery>;
}

export const terminals = signal<ReadonlyMap<string, Terminal>>(new Map());
export const trails = signal<ReadonlyMap<string, Fix[]>>(new Map());
export const instructions = signal<ReadonlyMap<string, Instruction>>(new Map());

const TRACK_TERMINALS = 100; // trails are read for the first of them; later fixes come as events
const TRACK_POINTS = 200;
const TRACK_HOURS = 24;

export function terminalName(id: string): string {
  return terminals.value.get(id)?.display_name ?? id;
}

interface Listed extends Omit<Terminal, "position"> {
  position: (Fix & { accuracy_m?: number }) | null;
}

export async function loadTerminals(): Promise<void> {
  if (!can("terminal.list")) return;
  const next = new Map<string, Terminal>();
  let after: string | null = null;
  do {
    const page = (await call(
      "terminal.list",
      after === null ? { limit: 500 } : { limit: 500, after },
    )) as {
      terminals?: Listed[];
      next_after?: string | null;
    };
    for (const t of page.terminals ?? [])
      next.set(t.terminal_id, { ...t, position: t.position });
    after = page.next_after ?? null;
  } while (after !== null);
  terminals.value = next;
  const since = new Date(Date.now() - TRACK_HOURS * 3600_000).toISOString();
  const withFix = [...next.values()]
    .filter((t) => t.position !== null)
    .slice(0, TRACK_TERMINALS);
  const read = await Promise.all(
    withFix.map((t) =>
      call("terminal.track", {
        terminal_id: t.terminal_id,
        since,
        limit: TRACK_POINTS,
      })
        .then(
          (r) =>
            [t.terminal_id, (r as { points?: Fix[] }).points ?? []] as const,
        )
        .catch(() => [t.terminal_id, [] as Fix[]] as const),
    ),
  );
  const tr = new Map(trails.value);
  for (const [id, points] of read) {
    let trail = tr.get(id) ?? [];
    for (const p of points)
      trail = addFix(trail, { lat: p.lat, lon: p.lon, time: p.time });
    tr.set(id, trail);
  }
  trails.value = tr;
}

function patchTerminal(id: string, patch: Partial<Terminal>): void {
  const next = new Map(terminals.value);
  const old = next.get(id) ?? {
    terminal_id: id,
    display_name: null,
    presence: "unknown",
    last_seen: null,
    position: null,
    status: null,
    battery: null,
  };
  next.set(id, { ...old, ...patch });
  terminals.value = next;
}

const QUEUED: Delivery = { state: "queued", sms: null, error: null };
const MAX_INSTRUCTIONS = 50;

/** An instruction as given (its text, its terminals queued), merged with the steps that its
 * events may have brought before the answer to terminal.instruct. */
export function recordInstruction(
  id: string,
  text: string,
  targets: readonly string[],
): void {
  const old = instructions.value.get(id);
  const ds = new Map(old?.terminals ?? []);
  for (const t of targets) if (!ds.has(t)) ds.set(t, QUEUED);
  const next = new Map(instructions.value);
  next.set(id, {
    instruction_id: id,
    text,
    sent_at: old?.sent_at ?? new Date().toISOString(),
    terminals: ds,
  });
  while (next.size > MAX_INSTRUCTIONS)
    next.delete(next.keys().next().value as string);
  instructions.value = next;
}

function patchDelivery(
  instructionId: string,
  terminalId: string,
  patch: Partial<Delivery>,
): void {
  const ins = instructions.value.get(instructionId) ?? {
    instruction_id: instructionId,
    text: "",
    sent_at: new Date().toISOString(),
    terminals: new Map<string, Delivery>(),
  };
  const ds = new Map(ins.terminals);
  ds.set(terminalId, { ...(ds.get(terminalId) ?? QUEUED), ...patch });
  const next = new Map(instructions.value);
  next.set(instructionId, { ...ins, terminals: ds });
  instructions.value = next;
}

export function handleTerminalEvent(e: GatewayEvent): void {
  const d = e.data as Record<string, unknown>;
  const id = typeof d.terminal_id === "string" ? d.terminal_id : null;
  if (e.type === "terminal.presence" && id) {
    patchTerminal(id, {
      presence: String(d.state),
      last_seen: (d.last_seen as string | null) ?? null,
    });
  } else if (e.type === "terminal.location" && id) {
    const fix: Fix = {
      lat: Number(d.lat),
      lon: Number(d.lon),
      time: String(d.time),
    };
    const old = terminals.value.get(id)?.position;
    if (!old || Date.parse(fix.time) >= Date.parse(old.time)) {
      patchTerminal(id, {
        position: fix,
        ...(typeof d.status === "string" ? { status: d.status } : {}),
        ...(typeof d.battery === "number" ? { battery: d.battery } : {}),
      });
    }
    const tr = new Map(trails.value);
    tr.set(id, addFix(tr.get(id) ?? [], fix));
    trails.value = tr;
  } else if (
    e.type === "terminal.instruction" &&
    id &&
    typeof d.instruction_id === "string"
  ) {
    patchDelivery(d.instruction_id, id, {
      state: String(d.state ?? d.step),
      error: (d.error as string | null) ?? null,
    });
  } else if (e.type === "sms.status") {
    const ref = d.ref as
      { instruction_id?: string; terminal_id?: string } | undefined;
    if (ref?.instruction_id && ref.terminal_id)
      patchDelivery(ref.instruction_id, ref.terminal_id, {
        sms: String(d.state),
      });
  }
}

export function followTerminals(): () => void {
  const offEvents = onEvent(handleTerminalEvent);
  const offReady = readyCount.subscribe((n) => {
    if (n > 0) loadTerminals().catch(() => undefined);
  });
  return () => {
    offEvents();
    offReady();
  };
}
