// The pure part of the voice state: folding call.state and conference.member into maps.
// Sans-I/O, tested in voiceModel.test.ts.

export interface CallInfo {
  call_id: string;
  session_id: string | null;
  direction: "inbound" | "outbound" | string;
  remote_uri: string | null;
  local_uri?: string | null;
  state: string;
  created_at?: string | null;
  answered_at?: string | null;
  ended_at?: string | null;
  sip_code?: number | null;
  cause?: string | null;
  transfer?: Record<string, unknown> | null;
}

export interface Member {
  member_id: string;
  call_id: string | null;
  console: boolean;
  target: string | null;
  chair: boolean;
  state: "joining" | "joined" | "muted" | "left" | string;
  muted: boolean;
  cause: string | null;
  talking: boolean;
}

export interface Conference {
  conference_id: string;
  session_id: string | null;
  title?: string | null;
  state?: string;
  dial_in?: { number: string; uri: string; pin_required: boolean } | null;
  members: ReadonlyMap<string, Member>;
}

/** At most this many ended calls are kept (the newest), to show how they ended. */
export const KEEP_ENDED = 10;

const ORDER = ["dialing", "ringing", "answering", "connected", "held", "ending", "ended"];

export function applyCall(map: ReadonlyMap<string, CallInfo>, c: CallInfo): ReadonlyMap<string, CallInfo> {
  const old = map.get(c.call_id);
  // A reply built before an event (dial's result says "dialing" after "ringing" arrived) or an
  // event replayed after a reconnect never takes a call back, and an ended call stays ended.
  if (old && (old.state === "ended" || (ORDER.indexOf(c.state) < ORDER.indexOf(old.state) && !(old.state === "held" && c.state === "connected")))) {
    return map;
  }
  const next = new Map(map);
  next.set(c.call_id, { ...old, ...c });
  const ended = [...next.values()].filter((x) => x.state === "ended");
  for (const x of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) next.delete(x.call_id);
  return next;
}

export function applyMember(
  map: ReadonlyMap<string, Conference>,
  m: Member & { conference_id: string; session_id?: string | null },
): ReadonlyMap<string, Conference> {
  const next = new Map(map);
  const conf: Conference = next.get(m.conference_id) ?? { conference_id: m.conference_id, session_id: m.session_id ?? null, members: new Map() };
  const members = new Map(conf.members);
  const { conference_id: _c, session_id: _s, ...member } = m;
  const old = members.get(m.member_id);
  if (old?.state === "left") return map; // a replayed event after the member left
  members.set(m.member_id, { ...old, ...member });
  const allGone = [...members.values()].every((x) => x.state === "left");
  const endedBy = m.cause === "conference-ended" || m.cause === "session-closed";
  next.set(m.conference_id, { ...conf, members, state: allGone && endedBy ? "ended" : conf.state ?? "active" });
  return next;
}
