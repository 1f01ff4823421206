// The broadcasts started here (followed while the view is hidden too) and the console's live
// microphone into one of them: broadcast.start {source: live}, media.open {broadcast_id}, then
// openMic, muted except while push-to-talk is held.
import { signal } from "@preact/signals";
import { openMic, type MediaChannel, type MicHandle } from "../../audio/audio";
import { call, onEvent, readyCount } from "../../state/connection";
import { applyBroadcast, applyTarget, type Broadcasts } from "./broadcastModel";

export const broadcasts = signal<Broadcasts>(new Map());
/** The live broadcast the console's microphone feeds, and its mic (muted until talk). */
export const liveMic = signal<{ broadcast_id: string; mic: MicHandle; channel: number } | null>(null);
export const talking = signal(false);

type Raw = Record<string, unknown>;

onEvent((e) => {
  if (e.type === "broadcast.state") {
    broadcasts.value = applyBroadcast(broadcasts.value, e.data as Raw);
    const d = e.data as Raw;
    if (d.state === "ended" && liveMic.value?.broadcast_id === d.broadcast_id) closeMic();
  } else if (e.type === "broadcast.target") broadcasts.value = applyTarget(broadcasts.value, e.data as Raw);
});

readyCount.subscribe((n) => {
  if (n === 0) return;
  for (const b of broadcasts.value.values()) {
    if (b.state === "ended") continue;
    void call("broadcast.get", { broadcast_id: b.broadcast_id })
      .then((r) => (broadcasts.value = applyBroadcast(broadcasts.value, r as Raw)))
      .catch(() => undefined);
  }
});

export function follow(started: Raw): void {
  broadcasts.value = applyBroadcast(broadcasts.value, started, true);
}

/** The console's microphone into the live broadcast (from a click: the browser starts audio
 * only after a gesture). */
export async function attachMic(broadcastId: string): Promise<void> {
  const ch = (await call("media.open", { broadcast_id: broadcastId, rate: 16000 })) as unknown as MediaChannel;
  const mic = await openMic(ch);
  mic.muted.value = !talking.value;
  liveMic.value = { broadcast_id: broadcastId, mic, channel: ch.channel };
}

export function closeMic(): void {
  const live = liveMic.value;
  if (!live) return;
  liveMic.value = null;
  live.mic.stop();
  void call("media.close", { channel: live.channel }).catch(() => undefined);
}

export function setTalking(on: boolean): void {
  talking.value = on;
  const live = liveMic.value;
  if (live) live.mic.muted.value = !on;
}
