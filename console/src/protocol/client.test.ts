// The client's I/O shell with a fake WebSocket and fake timers: hello, subscribe, a dropped
// link, the reconnect after the backoff, the resubscription from the last seq seen, a refused
// token not retried.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConsoleClient } from "./client";
import type { GatewayEvent } from "./envelope";

class FakeSocket {
  static all: FakeSocket[] = [];
  sent: { id: number; method: string; params: Record<string, unknown> }[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: string }) => void) | null = null;
  onclose: ((c: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  closed = false;
  binaryType = "blob";

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  binarySent: ArrayBuffer[] = [];
  send(frame: string | ArrayBuffer) {
    if (typeof frame === "string") this.sent.push(JSON.parse(frame));
    else this.binarySent.push(frame);
  }
  close() {
    this.closed = true;
  }
  reply(method: string, result: Record<string, unknown>) {
    const req = this.sent.find((r) => r.method === method && !(r as { answered?: boolean }).answered);
    if (!req) throw new Error(`no ${method} sent`);
    (req as { answered?: boolean }).answered = true;
    this.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", id: req.id, result }) });
  }
  fail(method: string, reason: string) {
    const req = [...this.sent].reverse().find((r) => r.method === method)!;
    (req as { answered?: boolean }).answered = true;
    this.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", id: req.id, error: { code: -32001, message: reason, data: { reason } } }) });
  }
  event(seq: number) {
    const params = { seq, type: "call.state", time: "2026-12-02T03:00:00.000Z", session_id: "s", data: {} };
    this.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", method: "event", params }) });
  }
  drop() {
    this.onclose?.({ code: 1006, reason: "" });
  }
}

const flush = () => vi.advanceTimersByTimeAsync(0);

async function signedIn(lastSeq: number): Promise<FakeSocket> {
  const ws = FakeSocket.all[FakeSocket.all.length - 1];
  ws.onopen?.();
  await flush();
  ws.reply("hello", { principal: "alice", role: "dispatcher", gateway_id: "g", seq: lastSeq, protocol: 1 });
  await flush();
  return ws;
}

describe("ConsoleClient", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.all = [];
  });
  afterEach(() => vi.useRealTimers());

  it("resumes from the last seq after a dropped link; a replayed event is not passed twice", async () => {
    const client = new ConsoleClient({ url: "ws://x", token: "t", history: 100, WebSocketImpl: FakeSocket as unknown as typeof WebSocket });
    const seen: number[] = [];
    const states: string[] = [];
    client.listen({ event: (e: GatewayEvent) => seen.push(e.seq), state: (s) => states.push(s) });
    client.start();
    let ws = await signedIn(500);
    expect(ws.sent.find((r) => r.method === "hello")?.params).toMatchObject({ token: "t" });
    expect(ws.sent.find((r) => r.method === "events.subscribe")?.params).toEqual({ since_seq: 400 });
    ws.reply("events.subscribe", { since_seq: 400, last_seq: 500 });
    await flush();
    expect(client.state).toBe("open");
    expect(ws.binaryType).toBe("arraybuffer");
    const frames: ArrayBuffer[] = [];
    client.listen({ binary: (f) => frames.push(f) });
    const audio = new ArrayBuffer(12 + 640);
    ws.onmessage?.({ data: audio as unknown as string });
    expect(frames).toEqual([audio]);
    expect(client.sendBinary(audio)).toBe(true);
    ws.event(498);
    ws.event(499);
    const inFlight = client.call("session.list", {});
    ws.drop();
    await expect(inFlight).rejects.toMatchObject({ reason: "disconnected" });
    expect(client.state).toBe("reconnecting");
    expect(client.sendBinary(audio)).toBe(false); // audio is not queued across a reconnect
    expect(FakeSocket.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(300); // the first backoff is at most 250 ms
    expect(FakeSocket.all).toHaveLength(2);
    ws = await signedIn(503);
    expect(ws.sent.find((r) => r.method === "events.subscribe")?.params).toEqual({ since_seq: 499 });
    ws.event(499); // a replay overlapping what was seen
    ws.event(500);
    ws.reply("events.subscribe", { since_seq: 499, last_seq: 503 });
    await flush();
    expect(seen).toEqual([498, 499, 500]);
    expect(states).toEqual(["connecting", "open", "reconnecting", "open"]);
    client.stop();
  });

  it("resubscribes from resume_since_seq after events.overflow, and starts over after seq-ahead", async () => {
    const client = new ConsoleClient({ url: "ws://x", token: "t", history: 10, WebSocketImpl: FakeSocket as unknown as typeof WebSocket });
    const seen: number[] = [];
    let resets = 0;
    client.listen({ event: (e: GatewayEvent) => seen.push(e.seq), reset: () => (resets += 1) });
    client.start();
    let ws = await signedIn(50);
    ws.reply("events.subscribe", { since_seq: 40, last_seq: 50 });
    await flush();
    ws.event(41);
    const overflow = { seq: 41, type: "events.overflow", time: "", session_id: null, data: { resume_since_seq: 41, reason: "slow-consumer" } };
    ws.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", method: "event", params: overflow }) });
    const again = ws.sent.filter((r) => r.method === "events.subscribe");
    expect(again.map((r) => r.params)).toEqual([{ since_seq: 40 }, { since_seq: 41 }]);
    expect(seen).toEqual([41]); // the overflow notice is no event of the stream
    ws.drop();
    await vi.advanceTimersByTimeAsync(300);
    ws = await signedIn(30); // a store restored from an older backup: seq 41 was never given here
    ws.fail("events.subscribe", "seq-ahead");
    await flush();
    expect(resets).toBe(1);
    expect(ws.sent.filter((r) => r.method === "events.subscribe").map((r) => r.params)).toEqual([
      { since_seq: 41 },
      { since_seq: 20 },
    ]);
    ws.reply("events.subscribe", { since_seq: 20, last_seq: 30 });
    await flush();
    ws.event(21); // below what was seen before the reset: shown, it is another stream
    expect(seen).toEqual([41, 21]);
    expect(client.state).toBe("open");
    client.stop();
  });

  it("does not retry a refused token", async () => {
    const client = new ConsoleClient({ url: "ws://x", token: "bad", WebSocketImpl: FakeSocket as unknown as typeof WebSocket });
    client.start();
    const ws = FakeSocket.all[0];
    ws.onopen?.();
    await flush();
    ws.fail("hello", "not-authenticated");
    await flush();
    expect(client.state).toBe("refused");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("drops a link whose ping goes unanswered and reconnects", async () => {
    const client = new ConsoleClient({
      url: "ws://x", token: "t", pingIntervalMs: 1000, pingTimeoutMs: 500,
      WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    });
    client.start();
    const ws = await signedIn(0);
    ws.reply("events.subscribe", { since_seq: 0, last_seq: 0 });
    await flush();
    await vi.advanceTimersByTimeAsync(1000);
    expect(ws.sent.some((r) => r.method === "ping")).toBe(true);
    await vi.advanceTimersByTimeAsync(500);
    expect(ws.closed).toBe(true);
    expect(client.state).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(300);
    expect(FakeSocket.all).toHaveLength(2);
    client.stop();
  });
});
