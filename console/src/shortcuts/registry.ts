// Keyboard shortcuts: one registry, one keydown listener. A view adds its shortcuts while it is
// shown (useShortcut) and they appear in the help overlay ("?"). Sans-I/O matching: `matches`
// takes a plain key event shape, tested without a browser.
import type { MessageKey } from "../i18n";

export interface Shortcut {
  /** e.g. "alt+1", "ctrl+enter", "?", "/", "escape", "space" (lower case, modifiers first). */
  keys: string;
  /** What it does, for the help overlay. */
  label: MessageKey;
  labelVars?: Record<string, string>;
  run: (e: KeyLike) => void;
  /** Also fires while typing in a field (default: not). */
  inInputs?: boolean;
}

export interface KeyLike {
  key: string;
  /** The physical key ("Digit1", "KeyN"): Alt+1 on a layout where Alt changes the character. */
  code?: string;
  altKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  target?: unknown;
  preventDefault?: () => void;
}

const MODS = ["ctrl", "alt", "shift", "meta"] as const;

export function normalize(keys: string): string {
  const parts = keys.toLowerCase().split("+").map((p) => p.trim());
  const key = parts.pop() ?? "";
  const mods = MODS.filter((m) => parts.includes(m));
  return [...mods, key].join("+");
}

export function comboOf(e: KeyLike): string {
  let key = e.key.toLowerCase();
  if (key === " ") key = "space";
  const physical = /^(?:Digit|Key)([0-9A-Z])$/.exec(e.code ?? "");
  if ((e.altKey || e.ctrlKey || e.metaKey) && physical) key = physical[1].toLowerCase();
  // Shift is part of the character for printable symbols ("?" is shift+/ on most layouts).
  const symbol = key.length === 1 && !/[a-z0-9]/.test(key);
  const mods = MODS.filter((m) => (m === "shift" && symbol ? false : e[`${m}Key` as const]));
  return [...mods, key].join("+");
}

function typing(target: unknown): boolean {
  const el = target as { tagName?: string; isContentEditable?: boolean } | null;
  if (!el || typeof el.tagName !== "string") return false;
  return ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName) || el.isContentEditable === true;
}

export class ShortcutRegistry {
  private readonly entries: Shortcut[] = [];
  private readonly watchers = new Set<() => void>();

  add(s: Shortcut): () => void {
    const entry = { ...s, keys: normalize(s.keys) };
    this.entries.push(entry);
    this.changed();
    return () => {
      const i = this.entries.indexOf(entry);
      if (i >= 0) this.entries.splice(i, 1);
      this.changed();
    };
  }

  /** Runs the newest shortcut for this key (a view's own over the shell's); true if one ran. */
  dispatch(e: KeyLike): boolean {
    const combo = comboOf(e);
    const inField = typing(e.target);
    for (let i = this.entries.length - 1; i >= 0; i -= 1) {
      const s = this.entries[i];
      if (s.keys !== combo || (inField && !s.inInputs)) continue;
      e.preventDefault?.();
      s.run(e);
      return true;
    }
    return false;
  }

  list(): readonly Shortcut[] {
    return this.entries;
  }

  onChange(f: () => void): () => void {
    this.watchers.add(f);
    return () => this.watchers.delete(f);
  }

  private changed(): void {
    for (const f of this.watchers) f();
  }
}

export const shortcuts = new ShortcutRegistry();
