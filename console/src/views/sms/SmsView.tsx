// SMS: recipients from the directory (people with a phone, groups) or typed; a text or one of
// the gateway's templates (sms.templates) with its variables; encoding and segments from
// sms.preview before sending; each recipient's status live (sms.status).
import { useEffect, useState } from "preact/hooks";
import { t } from "../../i18n";
import { call, can } from "../../state/connection";
import { endpoints, groups } from "../../state/directory";
import { useOnReady } from "../../state/hooks";
import { selectedIncident } from "../../state/incidents";
import { Command } from "../../ui/Command";
import { newKey } from "../../ui/idempotency";
import { parseRecipients } from "./smsModel";
import { recordSend } from "./smsState";
import { SmsStatus } from "./SmsStatus";

interface Template {
  name: string;
  text: string;
  variables: string[] | null;
}

interface Preview {
  encoding: string;
  segments: number;
  units: number;
  per_segment: number;
  max_segments: number;
  allowed: boolean;
}

type Text = { body: string } | { template: string; variables: Record<string, string> };

function Recipients({ list, setList }: { list: string[]; setList: (l: string[]) => void }) {
  const [typed, setTyped] = useState("");
  const people = endpoints.value.filter((ep) => ep.phone || ep.uri?.startsWith("tel:"));
  const add = () => {
    const more = parseRecipients(typed).filter((r) => !list.includes(r));
    if (more.length) setList([...list, ...more]);
    setTyped("");
  };
  return (
    <fieldset class="sms-recipients">
      <legend>{t("sms.recipients")}</legend>
      <ul class="chips" aria-label={t("sms.recipients")}>
        {list.map((r) => (
          <li key={r} class="chip" data-recipient={r}>
            <span class="mono">{r}</span>
            <button type="button" aria-label={t("sms.remove", { who: r })} onClick={() => setList(list.filter((x) => x !== r))}>
              ×
            </button>
          </li>
        ))}
      </ul>
      <label for="sms-recipient">{t("sms.addRecipient")}</label>
      <input
        id="sms-recipient"
        list="sms-directory"
        value={typed}
        placeholder={t("sms.recipient.placeholder")}
        onInput={(e) => setTyped((e.target as HTMLInputElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter") {
            e.preventDefault();
            add();
          }
        }}
      />
      <datalist id="sms-directory">
        {people.map((ep) => (
          <option key={ep.name} value={ep.name}>
            {ep.display_name ?? ep.phone ?? ep.name}
          </option>
        ))}
        {groups.value.map((g) => (
          <option key={`group:${g}`} value={`group:${g}`}>
            {t("sms.group", { group: g })}
          </option>
        ))}
      </datalist>
      <button type="button" id="sms-add" disabled={!typed.trim() || !can("sms.send")} onClick={add}>
        {t("sms.add")}
      </button>
    </fieldset>
  );
}

function PreviewLine({ text }: { text: Text | null }) {
  const [p, setP] = useState<Preview | null>(null);
  const [why, setWhy] = useState<string | null>(null);
  const key = JSON.stringify(text);
  useEffect(() => {
    setP(null);
    setWhy(null);
    if (text === null || !can("sms.preview")) return;
    let live = true;
    const timer = setTimeout(() => {
      call("sms.preview", text)
        .then((r) => live && setP(r as unknown as Preview))
        .catch((e: unknown) => live && setWhy(e instanceof Error ? e.message : String(e)));
    }, 250);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [key]);
  if (why) return <p id="sms-preview" class="sms-preview error" role="status">{why}</p>;
  if (!p) return <p id="sms-preview" class="sms-preview muted" role="status">{t("sms.preview.none")}</p>;
  return (
    <p id="sms-preview" class={`sms-preview${p.allowed ? "" : " error"}`} role="status" data-encoding={p.encoding} data-segments={p.segments}>
      {t("sms.preview", { encoding: p.encoding, segments: p.segments, units: p.units, per: p.per_segment })}
      {!p.allowed && ` ${t("sms.preview.tooLong", { max: p.max_segments })}`}
    </p>
  );
}

export function SmsView() {
  const [to, setTo] = useState<string[]>([]);
  const [body, setBody] = useState("");
  const [templates, setTemplates] = useState<Template[]>([]);
  const [template, setTemplate] = useState("");
  const [vars, setVars] = useState<Record<string, string>>({});
  useOnReady(() => call("sms.templates", {}).then((r) => setTemplates((r as { templates?: Template[] }).templates ?? [])));
  const tpl = templates.find((x) => x.name === template);
  const text: Text | null = tpl
    ? (tpl.variables ?? []).every((v) => vars[v]?.trim())
      ? { template: tpl.name, variables: vars }
      : null
    : body.trim()
      ? { body }
      : null;
  const send = async () => {
    if (text === null || to.length === 0) return;
    const session = selectedIncident.value;
    const r = (await call("sms.send", { to, ...text, idempotency_key: newKey(), ...(session ? { session_id: session } : {}) })) as {
      send_id: string;
      session_id: string;
      encoding: string;
      segments: number;
      message_ids: string[];
    };
    // The send's incident (a new one when none was selected) is where the replies arrive.
    if (!session) selectedIncident.value = r.session_id;
    setTo([]);
    setBody("");
    await recordSend(r);
  };
  return (
    <section class="view sms" aria-labelledby="sms-title">
      <header class="view-head">
        <h1 id="sms-title">{t("view.sms")}</h1>
      </header>
      <div class="voice-grid">
        <form class="panel sms-compose" onSubmit={(e) => e.preventDefault()} aria-labelledby="sms-compose-title">
          <h2 id="sms-compose-title">{t("sms.compose")}</h2>
          <Recipients list={to} setList={setTo} />
          <label for="sms-template">{t("sms.template")}</label>
          <select id="sms-template" value={template} onChange={(e) => setTemplate((e.target as HTMLSelectElement).value)}>
            <option value="">{t("sms.template.none")}</option>
            {templates.map((x) => (
              <option key={x.name} value={x.name} disabled={x.variables === null}>
                {x.name}
              </option>
            ))}
          </select>
          {tpl ? (
            <div class="sms-vars">
              <p class="muted sms-template-text">{tpl.text}</p>
              {(tpl.variables ?? []).map((v) => (
                <span key={v} class="sms-var">
                  <label for={`sms-var-${v}`}>{v}</label>
                  <input id={`sms-var-${v}`} value={vars[v] ?? ""} onInput={(e) => setVars({ ...vars, [v]: (e.target as HTMLInputElement).value })} />
                </span>
              ))}
            </div>
          ) : (
            <>
              <label for="sms-body">{t("sms.body")}</label>
              <textarea id="sms-body" rows={4} value={body} onInput={(e) => setBody((e.target as HTMLTextAreaElement).value)} />
            </>
          )}
          <PreviewLine text={text} />
          <Command method="sms.send" id="sms-send" type="submit" disabled={text === null || to.length === 0} run={send}>
            {t("sms.send", { n: to.length })}
          </Command>
        </form>
        <section class="panel" aria-labelledby="sms-status-title">
          <h2 id="sms-status-title">{t("sms.status")}</h2>
          <SmsStatus />
        </section>
      </div>
    </section>
  );
}
