// The sends of this console, kept while the view is hidden too: sms.status events folded as
// they come, each send read again (sms.get) after a reconnect.
import { signal } from "@preact/signals";
import { call, onEvent, readyCount } from "../../state/connection";
import { addSend, applyStatus, mergeGet, type Sends } from "./smsModel";

export const sends = signal<Sends>(new Map());

onEvent((e) => {
  if (e.type === "sms.status") sends.value = applyStatus(sends.value, e.data as Parameters<typeof applyStatus>[1]);
});

async function refresh(sendId: string): Promise<void> {
  const got = (await call("sms.get", { send_id: sendId })) as Parameters<typeof mergeGet>[2];
  sends.value = mergeGet(sends.value, sendId, got);
}

readyCount.subscribe((n) => {
  if (n > 0) for (const id of sends.value.keys()) void refresh(id).catch(() => undefined);
});

export async function recordSend(r: Parameters<typeof addSend>[1]): Promise<void> {
  sends.value = addSend(sends.value, r);
  await refresh(r.send_id);
}
