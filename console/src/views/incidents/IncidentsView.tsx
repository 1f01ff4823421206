// Incidents: the list (open ones, closed ones on demand), create one, switch between them,
// close one; the selected incident's timeline from the durable event stream.
import { useRef, useState } from "preact/hooks";
import { formatTime, t, tValue } from "../../i18n";
import { useShortcut } from "../../shortcuts/useShortcut";
import { call } from "../../state/connection";
import { incidents, loadIncidents, selectedIncident, type Incident } from "../../state/incidents";
import { Command } from "../../ui/Command";
import { newKey } from "../../ui/idempotency";
import { reportFailure } from "../../ui/notice";
import { Timeline } from "./Timeline";

function title(s: Incident): string {
  return s.title || t("incidents.untitled");
}

export function IncidentsView() {
  const [showClosed, setShowClosed] = useState(false);
  const [draft, setDraft] = useState("");
  const titleField = useRef<HTMLInputElement>(null);
  useShortcut({ keys: "alt+n", label: "shortcut.newIncident", run: () => titleField.current?.focus() });

  const all = [...incidents.value.values()].sort((a, b) => (b.created_at ?? "").localeCompare(a.created_at ?? ""));
  const shown = all.filter((s) => showClosed || s.state === "open");
  const current = selectedIncident.value ? incidents.value.get(selectedIncident.value) : undefined;

  const create = async () => {
    const r = (await call("session.create", { title: draft.trim() || null, idempotency_key: newKey() })) as unknown as Incident;
    setDraft("");
    selectedIncident.value = r.session_id;
  };
  const toggleClosed = (on: boolean) => {
    setShowClosed(on);
    if (on) loadIncidents("closed").catch((e) => reportFailure("session.list", e));
  };

  return (
    <section class="view incidents" aria-labelledby="incidents-title">
      <div class="incidents-side">
        <h1 id="incidents-title">{t("incidents.list")}</h1>
        <form
          class="new-incident"
          onSubmit={(e) => {
            e.preventDefault();
          }}
        >
          <label for="incident-title">{t("incidents.titleField")}</label>
          <div class="row">
            <input
              id="incident-title"
              ref={titleField}
              value={draft}
              maxLength={200}
              onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
            />
            <Command method="session.create" type="submit" id="incident-create" run={create}>
              {t("incidents.create")}
            </Command>
          </div>
        </form>
        <label class="check">
          <input type="checkbox" checked={showClosed} onChange={(e) => toggleClosed((e.target as HTMLInputElement).checked)} />
          {t("incidents.showClosed")}
        </label>
        {shown.length === 0 ? (
          <p class="muted">{t("incidents.none")}</p>
        ) : (
          <ul class="incident-list" data-testid="incident-list">
            {shown.map((s) => (
              <li key={s.session_id}>
                <button
                  type="button"
                  class={`incident-item ${s.session_id === selectedIncident.value ? "selected" : ""}`}
                  aria-current={s.session_id === selectedIncident.value ? "true" : undefined}
                  data-session={s.session_id}
                  data-state={s.state}
                  onClick={() => (selectedIncident.value = s.session_id)}
                >
                  <span class="incident-title">{title(s)}</span>
                  <span class={`badge state-${s.state}`}>{tValue(s.state)}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </div>
      <div class="incidents-main">
        {current === undefined ? (
          <p class="muted">{t("incidents.select")}</p>
        ) : (
          <>
            <header class="incident-head">
              <h2 id="incident-current" data-session={current.session_id}>
                {title(current)}
              </h2>
              <span class={`badge state-${current.state}`}>
                {tValue(current.state)}
              </span>
              <span class="muted">
                {t("incidents.createdBy", { who: current.created_by ?? "—", time: current.created_at ? formatTime(current.created_at) : "—" })}
              </span>
              <Command
                method="session.close"
                id="incident-close"
                disabled={current.state !== "open"}
                run={() => call("session.close", { session_id: current.session_id })}
              >
                {t("incidents.close")}
              </Command>
            </header>
            <Timeline sessionId={current.session_id} />
          </>
        )}
      </div>
    </section>
  );
}
