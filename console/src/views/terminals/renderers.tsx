// Timeline lines for the terminals' events (registered at start by index.ts): positions,
// presence, each delivery step of an instruction (with the fallback SMS), the video streams.
import { t, tValue } from "../../i18n";
import { terminalName } from "../../state/terminals";
import { registerRenderer } from "../incidents/renderers";

const d = (data: Record<string, unknown>, k: string) => {
  const v = data[k];
  return v === null || v === undefined ? "—" : String(v);
};
const who = (data: Record<string, unknown>) =>
  terminalName(d(data, "terminal_id"));

registerRenderer("terminal.location", (e) => {
  const x = e.data as Record<string, unknown>;
  return t("summary.location", {
    terminal: who(x),
    lat: Number(x.lat).toFixed(5),
    lon: Number(x.lon).toFixed(5),
    accuracy: Math.round(Number(x.accuracy_m)),
  });
});

registerRenderer("terminal.presence", (e) => {
  const x = e.data as Record<string, unknown>;
  return t("summary.presence", {
    terminal: who(x),
    state: tValue(x.state),
    reason: tValue(x.reason),
  });
});

registerRenderer("terminal.instruction", (e) => {
  const x = e.data as Record<string, unknown>;
  const terminal = who(x);
  if (x.step === "fallback-sms")
    return t("summary.instruction.sms", {
      terminal,
      message: d(x, "sms_message_id"),
    });
  if (x.error)
    return t("summary.instruction.error", {
      terminal,
      step: tValue(x.step),
      error: tValue(x.error),
    });
  return t("summary.instruction", { terminal, step: tValue(x.step) });
});

registerRenderer("video.state", (e) => {
  const x = e.data as Record<string, unknown>;
  const terminal = who(x);
  if (x.state === "watching")
    return t("summary.video.watching", { terminal, n: d(x, "watching") });
  if (x.reason)
    return t("summary.video.reason", {
      terminal,
      state: tValue(x.state),
      reason: tValue(x.reason),
    });
  return t("summary.video", { terminal, state: tValue(x.state) });
});
