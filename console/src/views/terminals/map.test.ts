import { describe, expect, it } from "vitest";
import {
  addFix,
  fit,
  formatLength,
  pan,
  project,
  scaleBar,
  tiles,
  toScreen,
  unproject,
  validTileUrl,
  zoomAt,
} from "./map";

describe("map", () => {
  it("projects and unprojects", () => {
    expect(project({ lat: 0, lon: 0 })).toEqual([0.5, 0.5]);
    const p = unproject(...project({ lat: 31.2304, lon: 121.4737 }));
    expect(p.lat).toBeCloseTo(31.2304, 6);
    expect(p.lon).toBeCloseTo(121.4737, 6);
  });
  it("fits points inside the canvas", () => {
    const pts = [
      { lat: 31.2, lon: 121.4 },
      { lat: 31.3, lon: 121.5 },
    ];
    const v = fit(pts, 800, 600);
    for (const p of pts) {
      const [x, y] = toScreen(v, 800, 600, p);
      expect(x).toBeGreaterThanOrEqual(39);
      expect(x).toBeLessThanOrEqual(761);
      expect(y).toBeGreaterThanOrEqual(39);
      expect(y).toBeLessThanOrEqual(561);
    }
    expect(fit([], 800, 600).scale).toBe(600);
  });
  it("zooms about the pointer and pans", () => {
    const v = { cx: 0.5, cy: 0.5, scale: 1024 };
    const p = { lat: 10, lon: 20 };
    const before = toScreen(v, 400, 400, p);
    const z = zoomAt(v, 2, before[0], before[1], 400, 400);
    const after = toScreen(z, 400, 400, p);
    expect(after[0]).toBeCloseTo(before[0], 6);
    expect(after[1]).toBeCloseTo(before[1], 6);
    expect(z.scale).toBe(2048);
    const moved = pan(v, 100, 0);
    expect(toScreen(moved, 400, 400, p)[0]).toBeCloseTo(before[0] + 100, 6);
  });
  it("picks a round scale bar", () => {
    const bar = scaleBar({ cx: 0.5, cy: 0.5, scale: 256 * 2 ** 14 }, 120);
    expect(
      [1, 2, 5].some(
        (m) =>
          Number(
            (bar.metres / 10 ** Math.floor(Math.log10(bar.metres))).toFixed(6),
          ) === m,
      ),
    ).toBe(true);
    expect(bar.px).toBeLessThanOrEqual(120);
    expect(bar.px).toBeGreaterThan(120 / 5);
    expect(formatLength(2000)).toBe("2 km");
    expect(formatLength(500)).toBe("500 m");
  });
  it("lists tiles only for a valid template", () => {
    expect(validTileUrl("https://t.example/{z}/{x}/{y}.png")).not.toBeNull();
    expect(validTileUrl("/tiles/{z}/{x}/{y}.png")).not.toBeNull();
    expect(validTileUrl("javascript:alert(1)//{z}{x}{y}")).toBeNull();
    expect(validTileUrl("https://t.example/tile.png")).toBeNull();
    const ts = tiles(
      "/t/{z}/{x}/{y}",
      { cx: 0.5, cy: 0.5, scale: 512 },
      512,
      512,
    );
    expect(ts.map((t) => t.url).sort()).toEqual([
      "/t/1/0/0",
      "/t/1/0/1",
      "/t/1/1/0",
      "/t/1/1/1",
    ]);
  });
  it("keeps trails ordered, once each, bounded", () => {
    let trail = addFix([], { lat: 1, lon: 1, time: "2026-01-01T00:00:02Z" });
    trail = addFix(trail, { lat: 0, lon: 0, time: "2026-01-01T00:00:01Z" });
    trail = addFix(trail, { lat: 1, lon: 1, time: "2026-01-01T00:00:02Z" });
    expect(trail.map((f) => f.lat)).toEqual([0, 1]);
    for (let i = 0; i < 10; i++)
      trail = addFix(
        trail,
        { lat: i, lon: 0, time: `2026-01-01T00:01:0${i}Z` },
        5,
      );
    expect(trail.length).toBe(5);
    expect(trail[4].lat).toBe(9);
  });
});
