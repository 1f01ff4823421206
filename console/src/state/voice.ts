// Calls and conferences as the console sees them: call.list at each (re)subscription, then
// call.state and conference.member events; the console's own audio (a media channel per call or
// conference, with the microphone and speaker of src/audio) is owned here, not by a component,
// so switching views does not hang up the dispatcher's ear.
import { computed, signal } from "@preact/signals";
import { openMic, openSpeaker, type MediaChannel, type MicHandle, type SpeakerHandle } from "../audio/audio";
import type { GatewayEvent } from "../protocol/envelope";
import { newKey } from "../ui/idempotency";
import { call, can, onEvent, readyCount } from "./connection";
import { applyCall, applyMember, type CallInfo, type Conference, type Member } from "./voiceModel";

export type { CallInfo, Conference, Member } from "./voiceModel";

export const calls = signal<ReadonlyMap<string, CallInfo>>(new Map());
export const conferences = signal<ReadonlyMap<string, Conference>>(new Map());
/** The call the pad, transfer and hang-up act on (the last one picked or set up here). */
export const selectedCall = signal<string | null>(null);

export const ringing = computed(() =>
  [...calls.value.values()].filter((c) => c.direction === "inbound" && c.state === "ringing"),
);
export const liveCalls = computed(() => [...calls.value.values()].filter((c) => c.state !== "ended"));

/** The console's audio on one channel: what it is for (a call or a conference), mic and speaker. */
export interface ConsoleAudio {
  key: string;
  channel: number;
  mode: "talk" | "listen";
  mic: MicHandle | null;
  speaker: SpeakerHandle;
}

export const consoleAudio = signal<ReadonlyMap<string, ConsoleAudio>>(new Map());
/** Calls this console dialled or answered: they get its microphone and speaker when connected. */
const mine = new Set<string>();

function setAudio(key: string, a: ConsoleAudio | null): void {
  const next = new Map(consoleAudio.value);
  if (a) next.set(key, a);
  else next.delete(key);
  consoleAudio.value = next;
}

async function startAudio(key: string, ch: MediaChannel, mode: "talk" | "listen"): Promise<void> {
  const speaker = await openSpeaker(ch);
  let mic: MicHandle | null = null;
  try {
    if (mode === "talk") mic = await openMic(ch);
  } catch (e) {
    speaker.stop();
    throw e;
  }
  setAudio(key, { key, channel: ch.channel, mode, mic, speaker });
}

/** Stops the console's audio for `key`; `close` also closes the channel at the gateway. */
export async function stopAudio(key: string, close = true): Promise<void> {
  const a = consoleAudio.value.get(key);
  if (!a) return;
  setAudio(key, null);
  a.mic?.stop();
  a.speaker.stop();
  if (close) await call("media.close", { channel: a.channel }).catch(() => undefined);
}

/** The console's microphone and speaker into a connected call. */
export async function talk(callId: string): Promise<void> {
  if (consoleAudio.value.has(callId)) return;
  const ch = (await call("media.open", { call_id: callId, direction: "both", rate: 16000 })) as unknown as MediaChannel;
  await startAudio(callId, ch, "talk");
}

/** Listen-in: the call's audio on the console's speaker only (call.listen). */
export async function listen(callId: string): Promise<void> {
  if (consoleAudio.value.has(callId)) return;
  const ch = (await call("call.listen", { call_id: callId })) as unknown as MediaChannel;
  await startAudio(callId, ch, "listen");
}

export function toggleMute(): void {
  for (const a of consoleAudio.value.values()) if (a.mic) a.mic.muted.value = !a.mic.muted.value;
  consoleAudio.value = new Map(consoleAudio.value);
}

export const micMuted = computed(() => [...consoleAudio.value.values()].some((a) => a.mic?.muted.value === true));

export async function dial(target: string, sessionId: string | null): Promise<CallInfo> {
  const c = (await call("call.dial", { target, idempotency_key: newKey(), ...(sessionId ? { session_id: sessionId } : {}) })) as unknown as CallInfo;
  mine.add(c.call_id);
  calls.value = applyCall(calls.value, c);
  selectedCall.value = c.call_id;
  return c;
}

export async function answer(callId: string): Promise<void> {
  mine.add(callId);
  selectedCall.value = callId;
  await call("call.answer", { call_id: callId });
}

/** The oldest ringing inbound call (the answer shortcut). */
export function firstRinging(): CallInfo | undefined {
  return ringing.value[0];
}

/** The call the hang-up shortcut ends: the selected one if live, else the newest live one. */
export function currentCall(): CallInfo | undefined {
  const sel = selectedCall.value ? calls.value.get(selectedCall.value) : undefined;
  if (sel && sel.state !== "ended") return sel;
  const live = liveCalls.value;
  return live[live.length - 1];
}

export async function hangup(callId: string): Promise<void> {
  await call("call.hangup", { call_id: callId });
}

// Conferences -------------------------------------------------------------------------------

export async function createConference(title: string, sessionId: string | null): Promise<Conference> {
  const c = (await call("conference.create", {
    idempotency_key: newKey(),
    ...(title ? { title } : {}),
    ...(sessionId ? { session_id: sessionId } : {}),
  })) as unknown as Conference & { members: Member[] };
  const conf: Conference = { ...c, members: new Map(c.members.map((m) => [m.member_id, m])) };
  const next = new Map(conferences.value);
  next.set(conf.conference_id, conf);
  conferences.value = next;
  return conf;
}

export type AddWhat = { target: string } | { call_id: string } | { terminal_id: string } | { console: true };

export async function addMember(conferenceId: string, what: AddWhat): Promise<Member> {
  const base = { conference_id: conferenceId, idempotency_key: newKey() };
  const params = "console" in what ? { ...base, console: true, rate: 16000 as const } : { ...base, ...what };
  const m = (await call("conference.add", params)) as unknown as Member & { media?: MediaChannel };
  if ("member_id" in m) conferences.value = applyMember(conferences.value, { ...m, conference_id: conferenceId });
  if ("console" in what && m.media) {
    try {
      await startAudio(`conf:${conferenceId}`, m.media, "talk");
    } catch (e) {
      await call("media.close", { channel: m.media.channel }).catch(() => undefined);
      throw e;
    }
  }
  return m;
}

/** Escalation: a call the console talks on moves into the conference and the console with it —
 * its own audio on the call closes (it would hear the phone twice) and it joins the mix as a
 * member unless it is one already. */
export async function moveCallIn(conferenceId: string, callId: string): Promise<Member> {
  const talking = consoleAudio.value.get(callId)?.mode === "talk";
  mine.delete(callId); // not given the console's audio again on a later connected
  const m = await addMember(conferenceId, { call_id: callId });
  if (talking) {
    await stopAudio(callId);
    if (!consoleAudio.value.has(`conf:${conferenceId}`)) await addMember(conferenceId, { console: true });
  }
  return m;
}

export async function endConference(conferenceId: string): Promise<void> {
  await call("conference.end", { conference_id: conferenceId });
  forgetConference(conferenceId);
}

function forgetConference(id: string): void {
  const next = new Map(conferences.value);
  next.delete(id);
  conferences.value = next;
  void stopAudio(`conf:${id}`, false);
}

// Following the gateway ----------------------------------------------------------------------

function onCallState(c: CallInfo): void {
  calls.value = applyCall(calls.value, c);
  if (c.state === "connected" && mine.has(c.call_id) && !consoleAudio.value.has(c.call_id)) {
    talk(c.call_id).catch(() => undefined);
  }
  if (c.state === "ended") {
    mine.delete(c.call_id);
    void stopAudio(c.call_id, false);
  }
}

function onMember(m: Member & { conference_id: string; session_id?: string }): void {
  conferences.value = applyMember(conferences.value, m);
  if (m.console && m.state === "left") void stopAudio(`conf:${m.conference_id}`, false);
}

export function handleVoiceEvent(e: GatewayEvent): void {
  if (e.type === "call.state") onCallState(e.data as unknown as CallInfo);
  else if (e.type === "conference.member") onMember(e.data as unknown as Member & { conference_id: string });
}

async function reload(): Promise<void> {
  if (!can("call.list")) return;
  const res = (await call("call.list", {})) as { calls?: CallInfo[] };
  const next = new Map<string, CallInfo>();
  for (const c of res.calls ?? []) next.set(c.call_id, c);
  // Keep what ended recently (shown as ended); replace the live ones with the gateway's view.
  for (const [id, c] of calls.value) if (c.state === "ended") next.set(id, c);
  calls.value = next;
  // The live conferences, whatever the event history still names (conference.list).
  const live = (await call("conference.list", {})) as { conferences?: (Conference & { members: Member[] })[] };
  const confs = new Map<string, Conference>();
  for (const c of live.conferences ?? []) confs.set(c.conference_id, { ...c, members: new Map(c.members.map((m) => [m.member_id, m])) });
  for (const id of consoleAudio.value.keys()) {
    if (id.startsWith("conf:") && !confs.has(id.slice(5))) void stopAudio(id, false);
  }
  conferences.value = confs;
}

export function followVoice(): () => void {
  // With what arrived before the shell mounted (the first subscription's replay).
  const offEvents = onEvent(handleVoiceEvent, { replay: true });
  const offReady = readyCount.subscribe((n) => {
    if (n > 0) reload().catch(() => undefined);
  });
  return () => {
    offEvents();
    offReady();
    for (const key of [...consoleAudio.value.keys()]) void stopAudio(key);
  };
}
