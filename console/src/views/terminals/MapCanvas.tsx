// The map: a canvas with the terminals' trails and last positions (a marker coloured by presence,
// the name beside it), a graticule, a scale bar; zoom with the wheel or +/-, pan by dragging or
// with the arrow keys, 0 fits every terminal. Tiles only from a configured tile URL. The markers
// drawn are readable in tests: window.dispatchMap.markers().
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../../i18n";
import type { Terminal } from "../../state/terminals";
import {
  fit,
  formatLength,
  pan,
  scaleBar,
  tiles,
  toScreen,
  unproject,
  zoomAt,
  type Fix,
  type Viewport,
} from "./map";

interface Props {
  terminals: readonly Terminal[];
  trails: ReadonlyMap<string, Fix[]>;
  selected: ReadonlySet<string>;
  tileUrl: string | null;
  onPick: (terminalId: string) => void;
}

interface Drawn {
  terminal_id: string;
  lat: number;
  lon: number;
  trail: number;
  x: number;
  y: number;
  presence: string;
  visible: boolean;
}

declare global {
  interface Window {
    dispatchMap?: { markers: () => Drawn[]; viewport: () => Viewport | null };
  }
}

const COLOURS: Record<string, string> = {
  online: "#1d7a35",
  offline: "#5b6570",
};
const images = new Map<string, HTMLImageElement>();

export function MapCanvas({
  terminals,
  trails,
  selected,
  tileUrl,
  onPick,
}: Props) {
  const box = useRef<HTMLDivElement>(null);
  const canvas = useRef<HTMLCanvasElement>(null);
  const [size, setSize] = useState({ w: 600, h: 400 });
  const [view, setView] = useState<Viewport | null>(null);
  const [tick, setTick] = useState(0); // a tile arrived
  const drawn = useRef<Drawn[]>([]);
  const shownView = useRef<Viewport | null>(null);
  const drag = useRef<{ x: number; y: number } | null>(null);
  const placed = terminals.filter((x) => x.position !== null);
  // Until the user zooms or pans, the map follows: every last position and trail in view.
  const v =
    view ??
    fit(
      placed.flatMap((x) => [
        x.position as Fix,
        ...(trails.get(x.terminal_id) ?? []),
      ]),
      size.w,
      size.h,
    );

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() =>
      setSize({
        w: Math.max(el.clientWidth, 100),
        h: Math.max(el.clientHeight, 100),
      }),
    );
    ro.observe(el);
    window.dispatchMap = {
      markers: () => drawn.current,
      viewport: () => shownView.current,
    };
    return () => {
      ro.disconnect();
      delete window.dispatchMap;
    };
  }, []);

  useEffect(() => {
    const c = canvas.current;
    const ctx = c?.getContext("2d");
    if (!c || !ctx) return;
    const dpr = window.devicePixelRatio || 1;
    c.width = size.w * dpr;
    c.height = size.h * dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#eef2f5";
    ctx.fillRect(0, 0, size.w, size.h);
    if (tileUrl) {
      for (const tile of tiles(tileUrl, v, size.w, size.h)) {
        let img = images.get(tile.url);
        if (!img) {
          img = new Image();
          img.onload = () => setTick((n) => n + 1);
          img.src = tile.url;
          images.set(tile.url, img);
        }
        if (img.complete && img.naturalWidth > 0)
          ctx.drawImage(img, tile.x, tile.y, tile.size + 0.5, tile.size + 0.5);
      }
    }
    drawGrid(ctx, v, size.w, size.h);
    const out: Drawn[] = [];
    for (const term of placed) {
      const trail = trails.get(term.terminal_id) ?? [];
      ctx.strokeStyle = selected.has(term.terminal_id) ? "#0b5cad" : "#7d8a96";
      ctx.lineWidth = 2;
      ctx.beginPath();
      trail.forEach((f, i) => {
        const [x, y] = toScreen(v, size.w, size.h, f);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
      const [x, y] = toScreen(v, size.w, size.h, term.position as Fix);
      ctx.fillStyle = COLOURS[term.presence] ?? "#a15c00";
      ctx.beginPath();
      ctx.arc(x, y, selected.has(term.terminal_id) ? 9 : 7, 0, 2 * Math.PI);
      ctx.fill();
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      ctx.fillStyle = "#1b2128";
      ctx.font = "13px sans-serif";
      ctx.fillText(term.display_name ?? term.terminal_id, x + 11, y + 4);
      const { lat, lon } = term.position as Fix;
      out.push({
        terminal_id: term.terminal_id,
        lat,
        lon,
        trail: trail.length,
        x,
        y,
        presence: term.presence,
        visible: x >= 0 && y >= 0 && x <= size.w && y <= size.h,
      });
    }
    const bar = scaleBar(v, 120);
    ctx.fillStyle = "#1b2128";
    ctx.fillRect(12, size.h - 18, bar.px, 4);
    ctx.fillText(formatLength(bar.metres), 12, size.h - 24);
    drawn.current = out;
    shownView.current = v;
    c.dataset.markers = String(out.length);
  });

  const zoom = (factor: number, sx = size.w / 2, sy = size.h / 2) =>
    setView(zoomAt(v, factor, sx, sy, size.w, size.h));
  const onKey = (e: KeyboardEvent) => {
    const step = 60;
    const moves: Record<string, () => void> = {
      "+": () => zoom(2),
      "=": () => zoom(2),
      "-": () => zoom(0.5),
      ArrowLeft: () => setView(pan(v, step, 0)),
      ArrowRight: () => setView(pan(v, -step, 0)),
      ArrowUp: () => setView(pan(v, 0, step)),
      ArrowDown: () => setView(pan(v, 0, -step)),
      "0": () => setView(null),
    };
    const run = moves[e.key];
    if (run && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      run();
    }
  };
  const pick = (e: MouseEvent) => {
    const r = (e.currentTarget as HTMLElement).getBoundingClientRect();
    const hit = drawn.current.find(
      (d) =>
        Math.hypot(d.x - (e.clientX - r.left), d.y - (e.clientY - r.top)) < 12,
    );
    if (hit) onPick(hit.terminal_id);
  };
  void tick;
  return (
    <div class="map-wrap">
      <div class="map-box" ref={box}>
        <canvas
          ref={canvas}
          id="terminal-map"
          class="terminal-map"
          style={{ width: `${size.w}px`, height: `${size.h}px` }}
          tabIndex={0}
          role="img"
          aria-label={t("terminals.map.label", { n: placed.length })}
          aria-describedby="terminal-map-keys"
          onKeyDown={onKey}
          onWheel={(e) => {
            e.preventDefault();
            const r = (e.currentTarget as HTMLElement).getBoundingClientRect();
            zoom(
              e.deltaY < 0 ? 1.25 : 0.8,
              e.clientX - r.left,
              e.clientY - r.top,
            );
          }}
          onMouseDown={(e) => (drag.current = { x: e.clientX, y: e.clientY })}
          onMouseMove={(e) => {
            if (!drag.current) return;
            setView(
              pan(v, e.clientX - drag.current.x, e.clientY - drag.current.y),
            );
            drag.current = { x: e.clientX, y: e.clientY };
          }}
          onMouseUp={() => (drag.current = null)}
          onMouseLeave={() => (drag.current = null)}
          onClick={pick}
        />
        <div class="map-controls">
          <button
            type="button"
            id="map-zoom-in"
            aria-label={t("terminals.map.zoomIn")}
            onClick={() => zoom(2)}
          >
            {t("terminals.map.plus")}
          </button>
          <button
            type="button"
            id="map-zoom-out"
            aria-label={t("terminals.map.zoomOut")}
            onClick={() => zoom(0.5)}
          >
            {t("terminals.map.minus")}
          </button>
          <button type="button" id="map-fit" onClick={() => setView(null)}>
            {t("terminals.map.fit")}
          </button>
        </div>
      </div>
      <p id="terminal-map-keys" class="muted map-keys">
        {t("terminals.map.keys")}
      </p>
    </div>
  );
}

/** Lines of latitude and longitude at a round step for the zoom (the map without tiles). */
function drawGrid(
  ctx: CanvasRenderingContext2D,
  v: Viewport,
  w: number,
  h: number,
): void {
  const degPerPx = 360 / v.scale;
  const step =
    [
      0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30,
    ].find((s) => s / degPerPx >= 80) ?? 30;
  ctx.strokeStyle = "#d3dae1";
  ctx.lineWidth = 1;
  const leftLon = (v.cx - w / 2 / v.scale) * 360 - 180;
  const rightLon = (v.cx + w / 2 / v.scale) * 360 - 180;
  for (
    let lon = Math.ceil(leftLon / step) * step;
    lon <= rightLon;
    lon += step
  ) {
    const [x] = toScreen(v, w, h, { lat: 0, lon });
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, h);
    ctx.stroke();
  }
  const top = unproject(v.cx, Math.max(0, v.cy - h / 2 / v.scale)).lat;
  const bottom = unproject(v.cx, Math.min(1, v.cy + h / 2 / v.scale)).lat;
  for (let lat = Math.ceil(bottom / step) * step; lat <= top; lat += step) {
    const [, y] = toScreen(v, w, h, { lat, lon: 0 });
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(w, y);
    ctx.stroke();
  }
}
