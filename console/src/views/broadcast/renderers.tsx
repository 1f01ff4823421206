// Timeline lines for broadcast events (registered at start by index.ts).
import { t, tValue } from "../../i18n";
import { registerRenderer } from "../incidents/renderers";

const s = (x: Record<string, unknown>, k: string) => (x[k] === null || x[k] === undefined ? "—" : String(x[k]));

registerRenderer("broadcast.state", (e) => {
  const x = e.data as Record<string, unknown>;
  const src = x.source && typeof x.source === "object" ? s(x.source as Record<string, unknown>, "type") : s(x, "source");
  const line = t("summary.broadcast.state", { state: tValue(x.state), source: src, priority: tValue(x.priority) });
  return x.end_reason ? `${line} (${tValue(x.end_reason)})` : line;
});

registerRenderer("broadcast.target", (e) => {
  const x = e.data as Record<string, unknown>;
  const line = t("summary.broadcast.target", { target: s(x, "target"), state: tValue(x.state) });
  const more = [x.sip_code, x.cause ? tValue(x.cause) : null].filter(Boolean).join(" · ");
  return more ? `${line} (${more})` : line;
});
