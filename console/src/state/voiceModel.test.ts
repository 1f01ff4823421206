import { describe, expect, it } from "vitest";
import { applyCall, applyMember, KEEP_ENDED, type CallInfo, type Conference, type Member } from "./voiceModel";

const c = (call_id: string, state: string, extra: Partial<CallInfo> = {}): CallInfo => ({
  call_id,
  session_id: "s",
  direction: "outbound",
  remote_uri: "sip:a@b",
  state,
  ...extra,
});

const m = (member_id: string, state: string, extra: Partial<Member> = {}) => ({
  conference_id: "conf",
  member_id,
  call_id: null,
  console: false,
  target: "alpha",
  chair: false,
  state,
  muted: false,
  cause: null,
  talking: false,
  ...extra,
});

describe("applyCall", () => {
  it("follows a call forward, never back (a stale reply or a replayed event)", () => {
    let map = applyCall(new Map(), c("1", "ringing"));
    map = applyCall(map, c("1", "dialing")); // dial's reply, built before the ringing event
    expect(map.get("1")?.state).toBe("ringing");
    map = applyCall(map, c("1", "connected"));
    map = applyCall(map, c("1", "held"));
    map = applyCall(map, c("1", "connected")); // unhold
    expect(map.get("1")?.state).toBe("connected");
    map = applyCall(map, c("1", "ended", { cause: "remote-hangup" }));
    map = applyCall(map, c("1", "connected"));
    expect(map.get("1")).toMatchObject({ state: "ended", cause: "remote-hangup" });
  });

  it("keeps only the newest ended calls", () => {
    let map: ReadonlyMap<string, CallInfo> = new Map();
    for (let i = 0; i < KEEP_ENDED + 5; i += 1) map = applyCall(map, c(String(i), "ended"));
    map = applyCall(map, c("live", "connected"));
    expect(map.size).toBe(KEEP_ENDED + 1);
    expect(map.has("0")).toBe(false);
    expect(map.has(String(KEEP_ENDED + 4))).toBe(true);
  });
});

describe("applyMember", () => {
  it("builds a conference from its members' events; one left stays left", () => {
    let confs: ReadonlyMap<string, Conference> = new Map();
    confs = applyMember(confs, m("a", "joining"));
    confs = applyMember(confs, m("a", "joined", { talking: true }));
    confs = applyMember(confs, m("b", "joined", { console: true, target: null }));
    const conf = confs.get("conf") as Conference;
    expect(conf.state).toBe("active");
    expect(conf.members.get("a")).toMatchObject({ state: "joined", talking: true });
    expect(conf.members.get("a")).not.toHaveProperty("conference_id");
    confs = applyMember(confs, m("a", "left", { cause: "removed" }));
    confs = applyMember(confs, m("a", "joined")); // replayed
    expect(confs.get("conf")?.members.get("a")?.state).toBe("left");
  });

  it("is ended when the last members leave because it ended", () => {
    let confs: ReadonlyMap<string, Conference> = new Map();
    confs = applyMember(confs, m("a", "joined"));
    confs = applyMember(confs, m("b", "joined"));
    confs = applyMember(confs, m("a", "left", { cause: "conference-ended" }));
    expect(confs.get("conf")?.state).toBe("active");
    confs = applyMember(confs, m("b", "left", { cause: "conference-ended" }));
    expect(confs.get("conf")?.state).toBe("ended");
  });
});
