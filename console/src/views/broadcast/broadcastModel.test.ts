import { describe, expect, it } from "vitest";
import { applyBroadcast, applyTarget, targetsOf } from "./broadcastModel";

describe("broadcast model", () => {
  it("follows only broadcasts started here, targets live", () => {
    expect(applyBroadcast(new Map(), { broadcast_id: "b1", state: "starting" }).size).toBe(0);
    let all = applyBroadcast(new Map(), { broadcast_id: "b1", state: "starting", priority: "normal", source: { type: "live" } }, true);
    all = applyTarget(all, { broadcast_id: "b1", target: "spk-a", kind: "sip", state: "ringing", attempts: 1 });
    all = applyTarget(all, { broadcast_id: "b1", target: "spk-a", state: "connected" });
    all = applyBroadcast(all, { broadcast_id: "b1", state: "ended", end_reason: "stopped" });
    const b = all.get("b1");
    expect(b).toMatchObject({ state: "ended", source: "live", end_reason: "stopped", priority: "normal" });
    expect(b?.targets.get("spk-a")).toMatchObject({ state: "connected", attempts: 1, kind: "sip" });
    expect(applyBroadcast(all, { broadcast_id: "b1", state: "active" })).toBe(all); // ended is ended
  });

  it("takes broadcast.get's target_states", () => {
    let all = applyBroadcast(new Map(), { broadcast_id: "b1", state: "active" }, true);
    all = applyBroadcast(all, { broadcast_id: "b1", target_states: [{ target: "zone:hall", kind: "zone", state: "connected" }] });
    expect(all.get("b1")?.targets.get("zone:hall")?.state).toBe("connected");
  });

  it("builds targets from the picks", () => {
    expect(targetsOf(["a"], ["g"], ["z"], ["a"])).toEqual(["a", "group:g", "zone:z"]);
  });
});
