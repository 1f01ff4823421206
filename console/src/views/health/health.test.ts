import { describe, expect, it } from "vitest";
import { duration, partRows, percent, windowStart, type Kpi } from "./health";

describe("health figures", () => {
  it("shows ratios as percentages rounded down (99.999 % is not 100 %), nothing measured as a dash", () => {
    expect(percent(1)).toBe("100.00 %");
    expect(percent(0.99999)).toBe("99.99 %");
    expect(percent(0.5)).toBe("50.00 %");
    expect(percent(null)).toBe("—");
  });

  it("shows durations in the largest units", () => {
    expect([duration(12), duration(185), duration(3720), duration(null)]).toEqual(["12 s", "3 min 05 s", "1 h 02 min", "—"]);
  });

  it("marks a part down while one of its outages is ongoing", () => {
    const k = {
      availability: {
        parts: { store: { availability: 1, down_s: 0, outages: 0 }, sip: { availability: 0.9, down_s: 60, outages: 2 } },
        outages: [
          { part: "sip", start: "a", end: "b", duration_s: 30, cause: "old", ongoing: false },
          { part: "sip", start: "c", end: null, duration_s: null, cause: "worker-killed", ongoing: true },
        ],
      },
    } as unknown as Kpi;
    expect(partRows(k).map((r) => [r.part, r.up, r.cause])).toEqual([
      ["sip", false, "worker-killed"],
      ["store", true, null],
    ]);
    expect(windowStart(new Date("2026-12-02T12:00:00Z"))).toBe("2026-12-01T12:00:00.000Z");
  });
});
