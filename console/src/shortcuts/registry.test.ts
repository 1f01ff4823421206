import { describe, expect, it } from "vitest";
import { ShortcutRegistry, comboOf, normalize, type KeyLike } from "./registry";

const key = (k: string, mods: Partial<KeyLike> = {}): KeyLike => ({
  key: k, altKey: false, ctrlKey: false, metaKey: false, shiftKey: false, ...mods,
});

describe("shortcuts", () => {
  it("normalizes combos and key events alike", () => {
    expect(normalize("Shift+Ctrl+K")).toBe("ctrl+shift+k");
    expect(comboOf(key("K", { ctrlKey: true, shiftKey: true }))).toBe("ctrl+shift+k");
    expect(comboOf(key("?", { shiftKey: true }))).toBe("?");
    expect(comboOf(key(" "))).toBe("space");
    expect(comboOf(key("¡", { altKey: true, code: "Digit1" }))).toBe("alt+1");
  });

  it("runs the newest registration, and not while typing unless asked", () => {
    const r = new ShortcutRegistry();
    const ran: string[] = [];
    r.add({ keys: "alt+1", label: "shortcut.help", run: () => ran.push("shell") });
    const off = r.add({ keys: "alt+1", label: "shortcut.help", run: () => ran.push("view") });
    expect(r.dispatch(key("1", { altKey: true }))).toBe(true);
    off();
    r.dispatch(key("1", { altKey: true }));
    expect(r.dispatch(key("1", { altKey: true, target: { tagName: "INPUT" } }))).toBe(false);
    r.add({ keys: "escape", label: "shortcut.help", run: () => ran.push("esc"), inInputs: true });
    r.dispatch(key("Escape", { target: { tagName: "INPUT" } }));
    expect(ran).toEqual(["view", "shell", "esc"]);
  });
});
