// Each recipient of this console's sends with its state, as sms.status reports it.
import { t, tValue } from "../../i18n";
import { sends } from "./smsState";

export function SmsStatus() {
  const all = [...sends.value.values()].reverse();
  if (all.length === 0) return <p class="muted">{t("sms.none")}</p>;
  return (
    <>
      {all.map((s) => (
        <table key={s.send_id} class="sms-send" data-send={s.send_id}>
          <caption>{t("sms.sendCaption", { encoding: s.encoding, segments: s.segments, n: s.messages.size })}</caption>
          <thead>
            <tr>
              <th scope="col">{t("sms.col.to")}</th>
              <th scope="col">{t("sms.col.state")}</th>
              <th scope="col">{t("sms.col.attempts")}</th>
            </tr>
          </thead>
          <tbody>
            {[...s.messages.values()].map((m) => (
              <tr key={m.message_id} data-to={m.to} data-state={m.state}>
                <td class="mono">{m.to || "…"}</td>
                <td>
                  <span class={`badge sms-${m.state}`}>{tValue(m.state)}</span>
                  {m.error ? <span class="muted"> {m.error}</span> : null}
                </td>
                <td>{m.attempts}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ))}
    </>
  );
}
