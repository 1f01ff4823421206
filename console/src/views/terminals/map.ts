// The Terminals view's map, sans-I/O: Web Mercator projection to a world square of 0..1, a
// viewport (centre and zoom), fitting points, zooming about a point, a scale bar of a round
// length, the tiles of an optional tile URL ({z}/{x}/{y}) and bounded trails. Drawn on a canvas by
// MapCanvas.tsx; no tile server is needed (nothing is fetched without a tile URL).

export interface LatLon {
  lat: number;
  lon: number;
}

/** Centre in world units (0..1 each way) and the world's width in CSS pixels. */
export interface Viewport {
  cx: number;
  cy: number;
  scale: number;
}

const EARTH_M = 40_075_016.686; // the equator's length
const MAX_LAT = 85.05112878;
export const MIN_SCALE = 256;
export const MAX_SCALE = 256 * 2 ** 21;

export function project(p: LatLon): [number, number] {
  const lat = Math.max(-MAX_LAT, Math.min(MAX_LAT, p.lat));
  const s = Math.sin((lat * Math.PI) / 180);
  return [
    (p.lon + 180) / 360,
    0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI),
  ];
}

export function unproject(x: number, y: number): LatLon {
  const n = Math.PI - 2 * Math.PI * y;
  return { lat: (180 / Math.PI) * Math.atan(Math.sinh(n)), lon: x * 360 - 180 };
}

export function toScreen(
  v: Viewport,
  w: number,
  h: number,
  p: LatLon,
): [number, number] {
  const [x, y] = project(p);
  return [w / 2 + (x - v.cx) * v.scale, h / 2 + (y - v.cy) * v.scale];
}

const clampScale = (s: number) => Math.max(MIN_SCALE, Math.min(MAX_SCALE, s));

/** The viewport showing every point with a margin (the whole world without points; a single
 * point at street level). */
export function fit(
  points: readonly LatLon[],
  w: number,
  h: number,
  margin = 40,
): Viewport {
  if (points.length === 0)
    return { cx: 0.5, cy: 0.5, scale: clampScale(Math.min(w, h)) };
  const xy = points.map(project);
  const xs = xy.map((p) => p[0]);
  const ys = xy.map((p) => p[1]);
  const [x0, x1, y0, y1] = [
    Math.min(...xs),
    Math.max(...xs),
    Math.min(...ys),
    Math.max(...ys),
  ];
  const span = Math.max(x1 - x0, y1 - y0, 1e-9);
  const room = Math.max(Math.min(w, h) - 2 * margin, 1);
  return {
    cx: (x0 + x1) / 2,
    cy: (y0 + y1) / 2,
    scale: clampScale(Math.min(room / span, 256 * 2 ** 16)),
  };
}

/** Zoom by `factor` keeping the world point under screen point (sx, sy) where it is. */
export function zoomAt(
  v: Viewport,
  factor: number,
  sx: number,
  sy: number,
  w: number,
  h: number,
): Viewport {
  const scale = clampScale(v.scale * factor);
  const wx = v.cx + (sx - w / 2) / v.scale;
  const wy = v.cy + (sy - h / 2) / v.scale;
  return {
    cx: wx - (sx - w / 2) / scale,
    cy: wy - (sy - h / 2) / scale,
    scale,
  };
}

export function pan(v: Viewport, dxPx: number, dyPx: number): Viewport {
  return {
    ...v,
    cx: v.cx - dxPx / v.scale,
    cy: Math.max(0, Math.min(1, v.cy - dyPx / v.scale)),
  };
}

/** The longest round length (1, 2 or 5 x 10^n metres) not wider than `maxPx` at the centre. */
export function scaleBar(
  v: Viewport,
  maxPx: number,
): { metres: number; px: number } {
  const lat = unproject(v.cx, v.cy).lat;
  const metresPerPx = (EARTH_M * Math.cos((lat * Math.PI) / 180)) / v.scale;
  const most = metresPerPx * maxPx;
  const pow = 10 ** Math.floor(Math.log10(most));
  const metres = [5, 2, 1].map((m) => m * pow).find((m) => m <= most) ?? pow;
  return { metres, px: metres / metresPerPx };
}

export function formatLength(metres: number): string {
  return metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
}

export interface Tile {
  url: string;
  x: number;
  y: number;
  size: number;
}

/** The tiles covering the canvas at the nearest zoom level, with their screen positions. */
export function tiles(
  template: string,
  v: Viewport,
  w: number,
  h: number,
): Tile[] {
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(v.scale / 256))));
  const n = 2 ** z;
  const size = v.scale / n;
  const left = v.cx - w / 2 / v.scale;
  const top = v.cy - h / 2 / v.scale;
  const out: Tile[] = [];
  for (
    let ty = Math.max(0, Math.floor(top * n));
    ty <= Math.min(n - 1, Math.ceil((top + h / v.scale) * n) - 1);
    ty++
  ) {
    for (
      let tx = Math.floor(left * n);
      tx <= Math.ceil((left + w / v.scale) * n) - 1;
      tx++
    ) {
      const wrapped = ((tx % n) + n) % n;
      out.push({
        url: template
          .replace("{z}", String(z))
          .replace("{x}", String(wrapped))
          .replace("{y}", String(ty)),
        x: w / 2 + (tx / n - v.cx) * v.scale,
        y: h / 2 + (ty / n - v.cy) * v.scale,
        size,
      });
      if (out.length > 64) return out;
    }
  }
  return out;
}

export interface Fix extends LatLon {
  time: string;
  id?: number;
}

/** `trail` with `fix` in time order (a repeat of the same time and place once), the newest
 * `max` kept. */
export function addFix(trail: readonly Fix[], fix: Fix, max = 500): Fix[] {
  if (
    trail.some(
      (f) => f.time === fix.time && f.lat === fix.lat && f.lon === fix.lon,
    )
  )
    return trail as Fix[];
  const next = [...trail, fix].sort(
    (a, b) => Date.parse(a.time) - Date.parse(b.time),
  );
  return next.length > max ? next.slice(next.length - max) : next;
}

/** Only http(s) URLs with {z}, {x} and {y}; anything else is no tile URL. */
export function validTileUrl(raw: string): string | null {
  const s = raw.trim();
  return /^(https?:\/\/|\/)[^\s]*$/.test(s) &&
    ["{z}", "{x}", "{y}"].every((k) => s.includes(k))
    ? s
    : null;
}
