import { describe, expect, it } from "vitest";
import type { GatewayEvent } from "../protocol/envelope";
import { log, onEvent } from "./connection";

const ev = (seq: number): GatewayEvent => ({ seq, type: "session.state", time: "", session_id: "s", data: {} });

describe("onEvent", () => {
  it("replays what the log holds, in seq order, when asked; a plain follower sees only what comes next", () => {
    log.clear();
    log.add(ev(2));
    log.add(ev(1));
    const replayed: number[] = [];
    const live: number[] = [];
    const off1 = onEvent((e) => replayed.push(e.seq), { replay: true });
    const off2 = onEvent((e) => live.push(e.seq));
    expect(replayed).toEqual([1, 2]);
    expect(live).toEqual([]);
    off1();
    off2();
    log.clear();
  });
});
