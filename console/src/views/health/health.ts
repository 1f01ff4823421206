// What the Health view shows, from a `kpi.get` result (docs/protocol.md): pure, tested.
export interface PartFigures {
  availability: number | null;
  down_s: number;
  outages: number;
}

export interface Outage {
  part: string;
  start: string;
  end: string | null;
  duration_s: number | null;
  cause: string | null;
  ongoing: boolean;
}

export interface ChannelFigures {
  met: number;
  missed: number;
  pending: number;
  share: number | null;
}

export interface Kpi {
  since: string;
  until: string;
  generated_at: string;
  availability: {
    whole: { availability: number | null; down_s: number; outages: number; parts: string[] };
    parts: Record<string, PartFigures>;
    outages: Outage[];
  };
  timeliness: {
    share: number | null;
    met: number;
    missed: number;
    pending: number;
    channels: Record<string, ChannelFigures>;
  };
}

export const WINDOW_H = 24;
export const CHANNELS = ["call", "broadcast", "sms", "instruction"] as const;

/** A 0..1 ratio as a percentage with two decimals ("99.95 %"); null (nothing measured) as "—". */
export function percent(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "—";
  return `${(Math.floor(ratio * 10000) / 100).toFixed(2)} %`;
}

/** Seconds as "1 h 02 min", "3 min 05 s", "12 s". */
export function duration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(sec).padStart(2, "0")} s`;
  return `${sec} s`;
}

export interface PartRow {
  part: string;
  up: boolean;
  cause: string | null;
  figures: PartFigures;
}

/** Each part this gateway runs, down now when an outage of it is ongoing. */
export function partRows(k: Kpi): PartRow[] {
  return Object.entries(k.availability.parts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([part, figures]) => {
      const now = k.availability.outages.find((o) => o.part === part && o.ongoing);
      return { part, up: now === undefined, cause: now?.cause ?? null, figures };
    });
}

/** `since` for the last WINDOW_H hours before `now`. */
export function windowStart(now: Date): string {
  return new Date(now.getTime() - WINDOW_H * 3600_000).toISOString();
}
