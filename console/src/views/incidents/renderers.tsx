// How the timeline shows an event: a renderer per event type, a generic one for every other
// type (its label and its data as key=value), so no event is ever hidden. A view adds its own
// (e.g. photos of terminal.feedback, a player for recordings) with registerRenderer.
import type { ComponentChildren } from "preact";
import { t, tMaybe, tValue } from "../../i18n";
import type { GatewayEvent } from "../../protocol/envelope";
import { AuthImage, AuthPlayer } from "../../ui/AuthMedia";

export type Renderer = (e: GatewayEvent) => ComponentChildren;

const renderers = new Map<string, Renderer>();

export function registerRenderer(type: string, r: Renderer): void {
  renderers.set(type, r);
}

export function eventLabel(type: string): string {
  return tMaybe(`event.${type}`) ?? type;
}

function str(v: unknown): string {
  if (v === null || v === undefined) return "—";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

export function genericSummary(e: GatewayEvent): string {
  return Object.entries(e.data)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${k}=${str(v)}`)
    .join(" · ");
}

export function renderEvent(e: GatewayEvent): ComponentChildren {
  const r = renderers.get(e.type);
  return r ? r(e) : genericSummary(e);
}

const d = (e: GatewayEvent) => e.data as Record<string, unknown>;

registerRenderer("session.state", (e) => {
  const x = d(e);
  const title = str(x.title ?? t("incidents.untitled"));
  return x.state === "closed"
    ? t("summary.session.closed", { title })
    : t("summary.session.opened", { title, who: str(x.created_by) });
});

// call.state, call.dtmf, conference.*: src/views/voice/renderers.tsx; sms.*: src/views/sms/renderers.tsx;
// broadcast.*: src/views/broadcast/renderers.tsx; terminal.location, terminal.presence,
// terminal.instruction, video.state: src/views/terminals/renderers.tsx.
interface Upload {
  sha256: string;
  type: string;
  url: string;
}

registerRenderer("terminal.feedback", (e) => {
  const x = d(e);
  const terminal = str(x.terminal_id);
  const uploads = Array.isArray(x.uploads) ? (x.uploads as Upload[]) : [];
  return (
    <>
      <span>{t("summary.feedback", { terminal, text: x.text ? str(x.text) : "" })}</span>
      {uploads.length > 0 && (
        <span class="tl-media">
          {uploads.map((u) =>
            u.type.startsWith("image/") ? (
              <AuthImage key={u.sha256} path={u.url} alt={t("media.photo", { terminal })} />
            ) : u.type.startsWith("audio/") ? (
              <AuthPlayer key={u.sha256} path={u.url} kind="audio" label={t("media.voiceNote", { terminal })} />
            ) : null,
          )}
        </span>
      )}
    </>
  );
});

registerRenderer("video.recording", (e) => {
  const x = d(e);
  const terminal = str(x.terminal_id);
  if (x.state !== "ready") return t("summary.recording.failed", { terminal, reason: tValue(x.reason) });
  return (
    <>
      <span>{t("summary.recording", { terminal })}</span>
      <span class="tl-media">
        <AuthPlayer path={`/v1/video/recordings/${encodeURIComponent(str(x.stream_id))}`} kind="video" label={t("summary.recording", { terminal })} />
      </span>
    </>
  );
});
