// Health at a glance: the seed's two indicators over the last 24 hours (kpi.get: availability
// of the whole and of each part, timeliness of each channel), the parts down now, the last
// outages; refreshed every minute, after each reconnect, and on demand.
import { useEffect, useState } from "preact/hooks";
import { formatTime, t, tMaybe, tValue, type MessageKey } from "../../i18n";
import { call, can } from "../../state/connection";
import { useOnReady } from "../../state/hooks";
import { Command } from "../../ui/Command";
import { Table } from "../../ui/Table";
import { reportFailure } from "../../ui/notice";
import { CHANNELS, duration, partRows, percent, windowStart, type Kpi } from "./health";

const REFRESH_MS = 60_000;

function partName(part: string): string {
  return tMaybe(`value.part.${part}`) ?? part;
}

export function HealthView() {
  const [kpi, setKpi] = useState<Kpi | null>(null);
  const load = async () => {
    if (!can("kpi.get")) return;
    setKpi((await call("kpi.get", { since: windowStart(new Date()) })) as unknown as Kpi);
  };
  useOnReady(() => load().catch((e) => reportFailure("kpi.get", e)));
  useEffect(() => {
    const timer = setInterval(() => void load().catch(() => undefined), REFRESH_MS);
    return () => clearInterval(timer);
  }, []);

  const rows = kpi ? partRows(kpi) : [];
  const outages = kpi ? kpi.availability.outages.slice(-10).reverse() : [];
  return (
    <section class="view health" aria-labelledby="health-title">
      <header class="view-head">
        <h1 id="health-title">{t("view.health")}</h1>
        <span class="muted">{t("health.window", { hours: 24 })}</span>
        {kpi && <span class="muted">{t("health.generated", { time: formatTime(kpi.generated_at) })}</span>}
        <Command method="kpi.get" id="health-refresh" run={load}>
          {t("health.refresh")}
        </Command>
      </header>
      {kpi === null ? (
        <p class="muted">{t("media.loading")}</p>
      ) : (
        <>
          <div class="kpi-cards">
            <div class="kpi-card" id="kpi-availability" data-value={kpi.availability.whole.availability ?? ""}>
              <span class="kpi-label">{t("health.availability")}</span>
              <span class="kpi-value">{percent(kpi.availability.whole.availability)}</span>
              <span class="muted">{t("health.downFor", { time: duration(kpi.availability.whole.down_s) })}</span>
            </div>
            <div class="kpi-card" id="kpi-timeliness" data-value={kpi.timeliness.share ?? ""}>
              <span class="kpi-label">{t("health.timeliness")}</span>
              <span class="kpi-value">{percent(kpi.timeliness.share)}</span>
              <span class="muted">
                {t("health.metMissed", {
                  met: kpi.timeliness.met,
                  missed: kpi.timeliness.missed,
                  pending: kpi.timeliness.pending,
                })}
              </span>
            </div>
          </div>
          <div class="health-grid">
            <section aria-labelledby="health-parts">
              <h2 id="health-parts">{t("health.parts")}</h2>
              <Table cols={["health.col.part", "health.col.now", "health.availability", "health.col.down"]}>
                {rows.map((r) => (
                  <tr key={r.part} data-part={r.part} data-up={String(r.up)}>
                    <td>{partName(r.part)}</td>
                    <td>
                      <span class={`presence presence-${r.up ? "online" : "offline"}`}>
                        {r.up ? t("health.up") : t("health.down", { cause: tValue(r.cause) })}
                      </span>
                    </td>
                    <td>{percent(r.figures.availability)}</td>
                    <td>{duration(r.figures.down_s)}</td>
                  </tr>
                ))}
              </Table>
            </section>
            <section aria-labelledby="health-channels">
              <h2 id="health-channels">{t("health.channels")}</h2>
              <Table
                cols={[
                  "health.col.channel",
                  "health.timeliness",
                  "health.col.met",
                  "health.col.missed",
                  "health.col.pending",
                ]}
              >
                {CHANNELS.map((c) => {
                  const f = kpi.timeliness.channels[c];
                  return (
                    <tr key={c} data-channel={c}>
                      <td>{t(`health.channel.${c}` as MessageKey)}</td>
                      <td>{percent(f?.share)}</td>
                      <td>{f?.met ?? 0}</td>
                      <td>{f?.missed ?? 0}</td>
                      <td>{f?.pending ?? 0}</td>
                    </tr>
                  );
                })}
              </Table>
            </section>
          </div>
          <section aria-labelledby="health-outages">
            <h2 id="health-outages">{t("health.outages")}</h2>
            {outages.length === 0 ? (
              <p class="muted">{t("health.noOutage")}</p>
            ) : (
              <ul class="outages">
                {outages.map((o) => (
                  <li key={`${o.part}-${o.start}`} data-part={o.part}>
                    {t("health.outage", {
                      part: partName(o.part),
                      start: formatTime(o.start),
                      duration: o.ongoing ? t("health.ongoing") : duration(o.duration_s),
                      cause: tValue(o.cause),
                    })}
                  </li>
                ))}
              </ul>
            )}
          </section>
        </>
      )}
    </section>
  );
}
