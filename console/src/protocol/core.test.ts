import { describe, expect, it } from "vitest";
import { Backoff } from "./backoff";
import { Correlator, EventCursor } from "./core";
import { DISCONNECTED, RemoteError, parseFrame, type GatewayEvent } from "./envelope";
import { EventLog } from "./eventlog";

const ev = (seq: number, type = "call.state", session_id: string | null = "s1"): GatewayEvent => ({
  seq,
  type,
  time: `2026-12-02T03:00:${String(seq % 60).padStart(2, "0")}.000Z`,
  session_id,
  data: {},
});

describe("Correlator", () => {
  it("matches replies to requests by id, in any order", async () => {
    const c = new Correlator();
    const a = c.request("session.list", {});
    const b = c.request("ping", {});
    expect(JSON.parse(a.frame)).toEqual({ jsonrpc: "2.0", id: a.id, method: "session.list", params: {} });
    expect(a.id).not.toBe(b.id);
    expect(c.receive(parseFrame(JSON.stringify({ jsonrpc: "2.0", id: b.id, result: { pong: 1 } })))).toBe(true);
    expect(c.receive(parseFrame(JSON.stringify({ jsonrpc: "2.0", id: a.id, result: { sessions: [] } })))).toBe(true);
    await expect(a.reply).resolves.toEqual({ sessions: [] });
    await expect(b.reply).resolves.toEqual({ pong: 1 });
    expect(c.inFlight).toBe(0);
  });

  it("turns an error reply into a RemoteError with the reason and details", async () => {
    const c = new Correlator();
    const a = c.request("session.create", { title: "x" });
    const err = { code: -32003, message: "observer may not", data: { reason: "forbidden", details: { role: "observer" } } };
    c.receive(parseFrame(JSON.stringify({ jsonrpc: "2.0", id: a.id, error: err })));
    const e = await a.reply.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RemoteError);
    expect(e).toMatchObject({ code: -32003, reason: "forbidden", details: { role: "observer" } });
  });

  it("ignores replies to ids it never sent, and events", () => {
    const c = new Correlator();
    expect(c.receive(parseFrame(JSON.stringify({ jsonrpc: "2.0", id: 99, result: {} })))).toBe(false);
    expect(c.receive(parseFrame(JSON.stringify({ jsonrpc: "2.0", method: "event", params: ev(1) })))).toBe(false);
  });

  it("fails every request in flight when the link is lost; a late reply changes nothing", async () => {
    const c = new Correlator();
    const a = c.request("ping", {});
    const b = c.request("session.list", {});
    c.failAll();
    await expect(a.reply).rejects.toMatchObject({ reason: DISCONNECTED });
    await expect(b.reply).rejects.toMatchObject({ reason: DISCONNECTED });
    expect(c.receive(parseFrame(JSON.stringify({ jsonrpc: "2.0", id: a.id, result: {} })))).toBe(false);
  });
});

describe("EventCursor", () => {
  it("passes each seq once: a replay after a reconnect shows nothing twice", () => {
    const cur = new EventCursor(100);
    const seen = [1, 2, 3, 2, 3, 4, 4, 5].map((s) => cur.accept(ev(s)).kind);
    expect(seen).toEqual(["new", "new", "new", "duplicate", "duplicate", "new", "duplicate", "new"]);
    expect(cur.lastSeq).toBe(5);
  });

  it("resumes from the last seq seen; the first time, from `history` events back", () => {
    const cur = new EventCursor(100);
    expect(cur.sinceSeq(1000)).toBe(900);
    expect(cur.sinceSeq(40)).toBe(0);
    cur.accept(ev(950));
    expect(cur.sinceSeq(1200)).toBe(950);
    cur.reset();
    expect(cur.sinceSeq(1200)).toBe(1100);
  });

  it("reads events.overflow as a request to resubscribe, though its seq was seen", () => {
    const cur = new EventCursor(100);
    cur.accept(ev(7));
    const v = cur.accept({ ...ev(7, "events.overflow", null), data: { resume_since_seq: 7, reason: "slow-consumer" } });
    expect(v).toEqual({ kind: "overflow", resumeSinceSeq: 7 });
    expect(cur.lastSeq).toBe(7);
    expect(cur.accept(ev(8)).kind).toBe("new");
  });
});

describe("Backoff", () => {
  it("grows by the factor up to the cap, with jitter in [ceiling/2, ceiling]", () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2 }, () => 0);
    expect([1, 2, 3, 4, 5, 6].map(() => low.next())).toEqual([50, 100, 200, 400, 500, 500]);
    const high = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2 }, () => 1);
    expect([1, 2, 3, 4, 5].map(() => high.next())).toEqual([100, 200, 400, 800, 1000]);
  });

  it("starts over after a connection got through, and honours a retry_after", () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2 }, () => 1);
    b.next();
    b.next();
    b.reset();
    expect(b.next()).toBe(100);
    expect(b.nextAtLeast(5000)).toBe(5000);
  });
});

describe("EventLog", () => {
  it("keeps seq order, indexes by session, refuses a seq twice", () => {
    const log = new EventLog();
    for (const s of [1, 3, 2]) log.add(ev(s, "call.state", s === 2 ? "s2" : "s1"));
    expect(log.add(ev(3))).toBe(false);
    expect(log.all().map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(log.forSession("s1").map((e) => e.seq)).toEqual([1, 3]);
  });

  it("forgets the oldest past its capacity", () => {
    const log = new EventLog(3);
    for (const s of [1, 2, 3, 4, 5]) log.add(ev(s));
    expect(log.all().map((e) => e.seq)).toEqual([3, 4, 5]);
  });
});

describe("parseFrame", () => {
  it("never throws on bad input", () => {
    expect(parseFrame("{").kind).toBe("garbage");
    expect(parseFrame("[]").kind).toBe("garbage");
    expect(parseFrame(JSON.stringify({ jsonrpc: "2.0", method: "event", params: { type: "x" } })).kind).toBe("garbage");
    expect(parseFrame(JSON.stringify({ jsonrpc: "2.0", method: "terminal.instruction", params: { a: 1 } }))).toEqual({
      kind: "notification",
      method: "terminal.instruction",
      params: { a: 1 },
    });
  });
});
