// Timeline lines for SMS events (registered at start by index.ts).
import { t, tValue } from "../../i18n";
import { registerRenderer } from "../incidents/renderers";

const s = (x: Record<string, unknown>, k: string) => (x[k] === null || x[k] === undefined ? "—" : String(x[k]));

registerRenderer("sms.status", (e) => {
  const x = e.data as Record<string, unknown>;
  const line = t("summary.sms.status", { to: s(x, "to"), state: tValue(x.state) });
  return x.error ? `${line} (${s(x, "error")})` : line;
});

registerRenderer("sms.inbound", (e) => {
  const x = e.data as Record<string, unknown>;
  return (
    <>
      <span>{t("summary.sms.inboundFrom", { from: s(x, "from") })}</span> <q class="sms-reply">{s(x, "body")}</q>
    </>
  );
});
