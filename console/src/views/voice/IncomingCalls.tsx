// Mounted by the shell on every view: the ringing inbound calls with their caller (a banner and
// a ring tone), and the voice shortcuts (answer, hang up, mute), so a dispatcher in another view
// still hears and answers a call.
import { useEffect } from "preact/hooks";
import { audioContext } from "../../audio/audio";
import { t } from "../../i18n";
import { useShortcut } from "../../shortcuts/useShortcut";
import { call, can } from "../../state/connection";
import { answer, currentCall, firstRinging, hangup, micMuted, ringing, toggleMute } from "../../state/voice";
import { Command } from "../../ui/Command";
import { reportFailure } from "../../ui/notice";

/** Two short beeps every 2 s while something rings (stops when nothing does). */
function useRingTone(on: boolean): void {
  useEffect(() => {
    if (!on) return;
    let stopped = false;
    let timer: ReturnType<typeof setInterval> | undefined;
    audioContext()
      .then((ctx) => {
        if (stopped) return;
        const ring = () => {
          for (const at of [0, 0.4]) {
            const osc = ctx.createOscillator();
            const gain = ctx.createGain();
            osc.frequency.value = 880;
            gain.gain.value = 0.15;
            osc.connect(gain).connect(ctx.destination);
            osc.start(ctx.currentTime + at);
            osc.stop(ctx.currentTime + at + 0.25);
          }
        };
        ring();
        timer = setInterval(ring, 2000);
      })
      .catch(() => undefined);
    return () => {
      stopped = true;
      if (timer) clearInterval(timer);
    };
  }, [on]);
}

export function IncomingCalls() {
  useShortcut({
    keys: "alt+a",
    label: "voice.shortcut.answer",
    inInputs: true,
    run: () => {
      const c = firstRinging();
      if (c && can("call.answer")) answer(c.call_id).catch((e) => reportFailure("call.answer", e));
    },
  });
  useShortcut({
    keys: "alt+h",
    label: "voice.shortcut.hangup",
    inInputs: true,
    run: () => {
      const c = currentCall();
      if (c && can("call.hangup")) hangup(c.call_id).catch((e) => reportFailure("call.hangup", e));
    },
  });
  useShortcut({ keys: "alt+m", label: "voice.shortcut.mute", inInputs: true, run: () => toggleMute() });
  const list = ringing.value;
  useRingTone(list.length > 0);
  if (list.length === 0 && !micMuted.value) return null;
  return (
    <div class="incoming" role="alert" aria-live="assertive" id="incoming-calls">
      {micMuted.value && <span class="badge mic-muted">{t("voice.micMuted")}</span>}
      {list.map((c) => (
        <div class="incoming-call" key={c.call_id} data-call={c.call_id}>
          <span class="ring-dot" aria-hidden="true" />
          <span>{t("voice.incoming", { caller: c.remote_uri ?? "—" })}</span>
          <Command method="call.answer" class="incoming-answer" aria-keyshortcuts="Alt+A" run={() => answer(c.call_id)}>
            {t("voice.answer")}
          </Command>
          <Command method="call.reject" class="incoming-reject" run={() => call("call.reject", { call_id: c.call_id })}>
            {t("voice.reject")}
          </Command>
        </div>
      ))}
    </div>
  );
}
