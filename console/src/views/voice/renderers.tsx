// Timeline lines for the voice events (registered at start by index.ts).
import { t, tValue } from "../../i18n";
import { registerRenderer } from "../incidents/renderers";

const d = (data: Record<string, unknown>, k: string) => {
  const v = data[k];
  return v === null || v === undefined ? "—" : String(v);
};

registerRenderer("call.state", (e) => {
  const x = e.data as Record<string, unknown>;
  const direction = t(x.direction === "inbound" ? "summary.direction.inbound" : "summary.direction.outbound");
  const remote = d(x, "remote_uri");
  const transfer = x.transfer as { target?: string; sip_code?: number; final?: boolean } | undefined;
  if (transfer) {
    return transfer.target
      ? t("summary.call.transfer", { remote, target: transfer.target })
      : t("summary.call.transferProgress", { remote, code: String(transfer.sip_code ?? "—") });
  }
  return x.state === "ended"
    ? t("summary.call.ended", { direction, remote, cause: tValue(x.cause) })
    : t("summary.call", { direction, remote, state: tValue(x.state) });
});

registerRenderer("call.dtmf", (e) => t("summary.call.dtmf", { digit: d(e.data, "digit") }));

registerRenderer("conference.member", (e) => {
  const x = e.data as Record<string, unknown>;
  const who = x.console === true ? t("voice.conf.console") : d(x, "target");
  if (x.state === "left") return t("summary.member.left", { who, cause: tValue(x.cause) });
  if (x.talking === true) return t("summary.member.talking", { who });
  return t("summary.member", { who, state: tValue(x.state) });
});

registerRenderer("conference.recording", (e) => t("summary.conference.recording", { file: d(e.data, "file") }));
