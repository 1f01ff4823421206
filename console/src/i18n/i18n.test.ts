import { describe, expect, it } from "vitest";
import { format, formatTime, lang, setLang, t, tValue } from "./index";

describe("i18n", () => {
  it("fills {names}, leaves unknown ones, and switches language", () => {
    expect(format("{a} and {b}", { a: 1 })).toBe("1 and {b}");
    setLang("en");
    expect(t("view.incidents")).toBe("Incidents");
    setLang("zh-CN");
    expect(lang.value).toBe("zh-CN");
    expect(t("view.incidents")).toBe("事件");
    expect(tValue("delivered")).toBe("已送达");
    expect(tValue("some-new-state")).toBe("some-new-state"); // shown as it is
    setLang("en");
  });

  it("shows the date only when the time is not today", () => {
    const now = new Date(2026, 11, 2, 12, 0, 0); // local time: the console's clock
    const today = formatTime(new Date(2026, 11, 2, 9, 5, 7).toISOString(), now);
    const before = formatTime(new Date(2026, 10, 30, 9, 5, 7).toISOString(), now);
    expect(today).toBe("09:05:07");
    expect(before).toMatch(/^11.30 09:05:07$/);
    expect(formatTime("not a time", now)).toBe("not a time");
  });
});
