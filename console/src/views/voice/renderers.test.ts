import { describe, expect, it } from "vitest";
import { setLang } from "../../i18n";
import type { GatewayEvent } from "../../protocol/envelope";
import { renderEvent } from "../incidents/renderers";
import "./renderers";

const ev = (type: string, data: Record<string, unknown>): GatewayEvent =>
  ({ seq: 1, type, time: "2026-12-02T04:00:00.000Z", session_id: "s", data }) as GatewayEvent;

describe("voice timeline lines", () => {
  it("calls: state, end with its cause, a transfer, a digit", () => {
    setLang("en");
    expect(renderEvent(ev("call.state", { direction: "inbound", remote_uri: "sip:a@b", state: "ringing" }))).toBe(
      "Inbound call sip:a@b: ringing",
    );
    expect(renderEvent(ev("call.state", { direction: "outbound", remote_uri: "sip:a@b", state: "ended", cause: "busy" }))).toBe(
      "Outbound call sip:a@b ended (busy)",
    );
    expect(renderEvent(ev("call.state", { remote_uri: "sip:a@b", state: "connected", transfer: { target: "chief" } }))).toBe(
      "Call sip:a@b transferred to chief",
    );
    expect(renderEvent(ev("call.dtmf", { call_id: "c", digit: "#" }))).toBe("Digit # received");
  });

  it("conference members: joined, talking, left with the cause, the console by name; in Chinese too", () => {
    setLang("en");
    expect(renderEvent(ev("conference.member", { target: "alpha", state: "joined", talking: false }))).toBe("alpha: joined");
    expect(renderEvent(ev("conference.member", { target: "alpha", state: "joined", talking: true }))).toBe("alpha is talking");
    expect(renderEvent(ev("conference.member", { target: "bravo", state: "left", cause: "removed" }))).toBe("bravo left (removed)");
    expect(renderEvent(ev("conference.member", { console: true, target: null, state: "muted" }))).toBe("This console: muted");
    setLang("zh-CN");
    expect(renderEvent(ev("conference.member", { target: "bravo", state: "left", cause: "removed" }))).toBe("bravo 已离开（已移出）");
    setLang("en");
  });
});
