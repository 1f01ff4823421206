import { formatTime, t } from "../../i18n";
import { eventsVersion, log } from "../../state/connection";
import { eventLabel, renderEvent } from "./renderers";

/** An incident's events from the durable stream, in the store's order (seq = time order). */
export function Timeline({ sessionId }: { sessionId: string }) {
  void eventsVersion.value; // re-render when events arrive
  const events = log.forSession(sessionId);
  return (
    <section class="timeline" aria-labelledby="timeline-title">
      <h2 id="timeline-title">{t("incidents.timeline")}</h2>
      {events.length === 0 ? (
        <p class="muted">{t("incidents.timeline.empty")}</p>
      ) : (
        <ol class="timeline-list" data-testid="timeline">
          {events.map((e) => (
            <li key={e.seq} class={`tl-item tl-${e.type.replace(/\./g, "-")}`} data-seq={e.seq} data-type={e.type}>
              <time dateTime={e.time}>{formatTime(e.time)}</time>
              <span class="tl-kind">{eventLabel(e.type)}</span>
              <span class="tl-body">{renderEvent(e)}</span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
