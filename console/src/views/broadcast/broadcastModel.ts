// The broadcasts this console follows and their targets, folded from broadcast.start /
// broadcast.get answers and broadcast.state / broadcast.target events (sans-I/O, tested).

export interface TargetInfo {
  target: string;
  kind: string;
  state: string;
  attempts: number;
  sip_code: number | null;
  cause: string | null;
}

export interface BroadcastInfo {
  broadcast_id: string;
  state: string;
  priority: string;
  source: string;
  end_reason: string | null;
  targets: ReadonlyMap<string, TargetInfo>;
}

export type Broadcasts = ReadonlyMap<string, BroadcastInfo>;

type Raw = Record<string, unknown>;

const str = (v: unknown, dflt = ""): string => (typeof v === "string" ? v : dflt);

function sourceType(v: unknown): string {
  return v && typeof v === "object" ? str((v as Raw).type) : str(v);
}

function target(raw: Raw, old?: TargetInfo): TargetInfo {
  return {
    target: str(raw.target, old?.target ?? ""),
    kind: str(raw.kind, old?.kind ?? "sip"),
    state: str(raw.state, old?.state ?? ""),
    attempts: typeof raw.attempts === "number" ? raw.attempts : (old?.attempts ?? 0),
    sip_code: typeof raw.sip_code === "number" ? raw.sip_code : (old?.sip_code ?? null),
    cause: typeof raw.cause === "string" ? raw.cause : null,
  };
}

/** A broadcast as broadcast.start / broadcast.get answered or broadcast.state reported it (its
 * `target_states`, when given, replace the targets known). */
export function applyBroadcast(all: Broadcasts, raw: Raw, follow = false): Broadcasts {
  const id = str(raw.broadcast_id);
  const old = all.get(id);
  if (!id || (!old && !follow)) return all;
  if (old?.state === "ended") return all;
  let targets = old?.targets ?? new Map<string, TargetInfo>();
  if (Array.isArray(raw.target_states)) {
    const next = new Map(targets);
    for (const t of raw.target_states as Raw[]) next.set(str(t.target), target(t, targets.get(str(t.target))));
    targets = next;
  }
  const next = new Map(all);
  next.set(id, {
    broadcast_id: id,
    state: str(raw.state, old?.state ?? "starting"),
    priority: str(raw.priority, old?.priority ?? ""),
    source: sourceType(raw.source) || (old?.source ?? ""),
    end_reason: typeof raw.end_reason === "string" ? raw.end_reason : (old?.end_reason ?? null),
    targets,
  });
  return next;
}

/** One broadcast.target event (of a broadcast followed here). */
export function applyTarget(all: Broadcasts, raw: Raw): Broadcasts {
  const b = all.get(str(raw.broadcast_id));
  const name = str(raw.target);
  if (!b || !name) return all;
  const targets = new Map(b.targets);
  targets.set(name, target(raw, targets.get(name)));
  const next = new Map(all);
  next.set(b.broadcast_id, { ...b, targets });
  return next;
}

/** The targets of a broadcast.start from what was picked: speakers by name, `group:`, `zone:`. */
export function targetsOf(speakers: Iterable<string>, groups: Iterable<string>, zones: Iterable<string>, typed: string[]): string[] {
  const out = [...speakers, ...[...groups].map((g) => `group:${g}`), ...[...zones].map((z) => `zone:${z}`), ...typed];
  return out.filter((v, i) => out.indexOf(v) === i);
}
