import { describe, expect, it } from "vitest";
import { addSend, applyStatus, mergeGet, parseRecipients } from "./smsModel";

const sent = { send_id: "s1", session_id: "x", encoding: "UCS-2", segments: 1, message_ids: ["m1", "m2"] };

describe("sms model", () => {
  it("folds statuses per recipient and keeps a final state final", () => {
    let s = addSend(new Map(), sent);
    s = applyStatus(s, { send_id: "s1", message_id: "m1", to: "+1", state: "sent", attempts: 1 });
    s = applyStatus(s, { send_id: "s1", message_id: "m1", to: "+1", state: "delivered", attempts: 1 });
    s = applyStatus(s, { send_id: "s1", message_id: "m1", to: "+1", state: "sent", attempts: 1 });
    expect(s.get("s1")?.messages.get("m1")?.state).toBe("delivered");
    expect(applyStatus(s, { send_id: "other", message_id: "m9", state: "sent" })).toBe(s);
  });

  it("sms.get fills recipients without undoing a newer event", () => {
    let s = addSend(new Map(), sent);
    s = applyStatus(s, { send_id: "s1", message_id: "m1", to: "+1", state: "sent" });
    s = mergeGet(s, "s1", { messages: [{ message_id: "m1", recipient: "+1", state: "queued" }, { message_id: "m2", recipient: "+2", state: "delivered" }] });
    expect(s.get("s1")?.messages.get("m1")?.state).toBe("sent");
    expect(s.get("s1")?.messages.get("m2")).toMatchObject({ to: "+2", state: "delivered" });
  });

  it("parses typed recipients", () => {
    expect(parseRecipients(" +1 555, group:d3;\n+1 555 ,")).toEqual(["+1 555", "group:d3"]);
  });
});
