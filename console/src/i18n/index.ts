// One dictionary per language; `t` is the only way a component gets text. Switching the
// language re-renders every component that read `lang` (a signal).
import { signal } from "@preact/signals";
import { en, type MessageKey } from "./en";
import { zhCN } from "./zh-CN";

export type Lang = "en" | "zh-CN";
export const LANGS: readonly Lang[] = ["en", "zh-CN"];
export const DICTIONARIES: Record<Lang, Record<MessageKey, string>> = { en, "zh-CN": zhCN };
export type { MessageKey };

const STORE_KEY = "dispatch-console.lang";

function initialLang(): Lang {
  try {
    const saved = globalThis.localStorage?.getItem(STORE_KEY);
    if (saved === "en" || saved === "zh-CN") return saved;
  } catch {
    /* storage refused */
  }
  const nav = globalThis.navigator?.language ?? "en";
  return nav.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export const lang = signal<Lang>(initialLang());

export function setLang(next: Lang): void {
  lang.value = next;
  try {
    globalThis.localStorage?.setItem(STORE_KEY, next);
  } catch {
    /* storage refused: the choice lasts for this page */
  }
  if (globalThis.document) document.documentElement.lang = next;
}

export function format(template: string, vars: Record<string, string | number> = {}): string {
  return template.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m));
}

export function t(key: MessageKey, vars?: Record<string, string | number>): string {
  return format(DICTIONARIES[lang.value][key] ?? en[key], vars);
}

/** A key that is known only at run time (an event type, a state): its text, or null. */
export function tMaybe(key: string, vars?: Record<string, string | number>): string | null {
  return key in en ? t(key as MessageKey, vars) : null;
}

/** A value of the protocol (a state, a cause, a step) in the console's language, else as it is. */
export function tValue(value: unknown): string {
  const raw = value === null || value === undefined ? "—" : String(value);
  return tMaybe(`value.${raw}`) ?? raw;
}

/** Time of day in the console's language (the timeline), with the date when it is not today
 * (an incident that spans midnight). */
export function formatTime(iso: string, now: Date = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const time = d.toLocaleTimeString(lang.value, { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString(lang.value, { month: "2-digit", day: "2-digit" })} ${time}`;
}
