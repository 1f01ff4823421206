// Browser geolocation -> `terminal.report` params (docs/protocol.md: WGS-84, ranges checked by
// the gateway; optional values the device does not know, or knows out of range, are left out).

export function reportParams(coords, timestamp, battery = null) {
  const p = {
    lat: coords.latitude,
    lon: coords.longitude,
    accuracy_m: Math.min(Math.max(coords.accuracy ?? 0, 0), 100000),
    time: new Date(timestamp).toISOString(),
  };
  const add = (name, value, lo, hi, below = true) => {
    if (typeof value === "number" && Number.isFinite(value) && value >= lo && (below ? value <= hi : value < hi)) {
      p[name] = value;
    }
  };
  add("altitude", coords.altitude, -1000, 20000);
  add("speed", coords.speed, 0, 350);
  add("heading", coords.heading, 0, 360, false);
  add("battery", battery, 0, 100);
  return p;
}

// Watches the device's position; calls onFix(coords, timestamp) and onError(code) with
// code "denied" | "unavailable" | "unsupported".
export class PositionWatch {
  constructor(onFix, onError) {
    this.onFix = onFix;
    this.onError = onError;
    this.id = null;
  }

  start() {
    if (this.id !== null) return;
    if (!("geolocation" in navigator)) {
      this.onError("unsupported");
      return;
    }
    this.id = navigator.geolocation.watchPosition(
      (pos) => this.onFix(pos.coords, pos.timestamp),
      (err) => this.onError(err.code === err.PERMISSION_DENIED ? "denied" : "unavailable"),
      { enableHighAccuracy: true, maximumAge: 5000, timeout: 60000 },
    );
  }

  stop() {
    if (this.id !== null) navigator.geolocation.clearWatch(this.id);
    this.id = null;
  }
}

// The battery level in percent, when the browser tells it (Chromium does; others do not).
export async function batteryLevel() {
  try {
    const b = await navigator.getBattery?.();
    return b ? Math.round(b.level * 100) : null;
  } catch {
    return null;
  }
}

// Fixes taken while the link was down, oldest first, sent when it is back so the track has no
// hole (the gateway stores reports up to 7 days old; only the newest goes out live). At most
// `max`: when full, every other one is dropped, so a long outage is kept whole at a coarser step.
export class Backlog {
  constructor(max = 300) {
    this.max = max;
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  add(params) {
    if (this.items.at(-1)?.time === params.time) return;
    if (this.items.length >= this.max) this.items = this.items.filter((_, i) => i % 2 === 1);
    this.items.push(params);
  }

  take() {
    const items = this.items;
    this.items = [];
    return items;
  }

  putBack(items) {
    this.items = [...items, ...this.items].slice(-this.max);
  }
}
