// The SMS sends of this console and their messages, folded from sms.send / sms.get answers and
// sms.status events (sans-I/O, tested).

export interface SmsMessage {
  message_id: string;
  to: string;
  state: string;
  attempts: number;
  error: string | null;
}

export interface SmsSend {
  send_id: string;
  session_id: string | null;
  encoding: string;
  segments: number;
  messages: ReadonlyMap<string, SmsMessage>;
}

export type Sends = ReadonlyMap<string, SmsSend>;

const FINAL = new Set(["delivered", "undelivered", "failed"]);

export function isFinal(state: string): boolean {
  return FINAL.has(state);
}

/** A send as sms.send answered it (messages known by id only until sms.get or an event). */
export function addSend(
  sends: Sends,
  r: { send_id: string; session_id?: string | null; encoding: string; segments: number; message_ids?: string[] },
): Sends {
  const next = new Map(sends);
  const old = sends.get(r.send_id);
  const messages = new Map(old?.messages ?? []);
  for (const id of r.message_ids ?? [])
    if (!messages.has(id)) messages.set(id, { message_id: id, to: "", state: "queued", attempts: 0, error: null });
  next.set(r.send_id, { send_id: r.send_id, session_id: r.session_id ?? null, encoding: r.encoding, segments: r.segments, messages });
  return next;
}

function put(sends: Sends, sendId: string, m: SmsMessage): Sends {
  const send = sends.get(sendId);
  if (!send) return sends;
  const messages = new Map(send.messages);
  messages.set(m.message_id, m);
  const next = new Map(sends);
  next.set(sendId, { ...send, messages });
  return next;
}

/** sms.get {send_id}: fills what is not known yet; a state an event already gave is kept unless
 * sms.get's is final (it is the newer one then: read after a reconnect). */
export function mergeGet(
  sends: Sends,
  sendId: string,
  got: { messages?: { message_id: string; recipient: string; state: string; attempts?: number; error?: string | null }[] },
): Sends {
  let next = sends;
  for (const g of got.messages ?? []) {
    const old = next.get(sendId)?.messages.get(g.message_id);
    const known = old !== undefined && old.to !== "";
    const state = known && !isFinal(g.state) ? old.state : g.state;
    next = put(next, sendId, {
      message_id: g.message_id,
      to: g.recipient,
      state,
      attempts: Math.max(old?.attempts ?? 0, g.attempts ?? 0),
      error: g.error ?? old?.error ?? null,
    });
  }
  return next;
}

/** One sms.status event (of a send of this console; others are left alone). */
export function applyStatus(
  sends: Sends,
  d: { message_id?: string; send_id?: string; to?: string; state?: string; attempts?: number; error?: string | null },
): Sends {
  if (!d.send_id || !d.message_id || !d.state || !sends.has(d.send_id)) return sends;
  const old = sends.get(d.send_id)?.messages.get(d.message_id);
  if (old && isFinal(old.state)) return sends; // a final state is final
  return put(sends, d.send_id, {
    message_id: d.message_id,
    to: d.to ?? old?.to ?? "",
    state: d.state,
    attempts: d.attempts ?? old?.attempts ?? 0,
    error: d.error ?? null,
  });
}

/** Typed recipients: split on commas, semicolons and new lines, blanks dropped, each once. */
export function parseRecipients(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(/[,;\n]/)) {
    const v = part.trim();
    if (v && !out.includes(v)) out.push(v);
  }
  return out;
}
