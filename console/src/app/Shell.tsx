// The signed-in screen: header (principal, role, link, language, sign-out), the navigation of
// views (Alt+1..7), the shown view, the status line.
import { useEffect, useRef } from "preact/hooks";
import { t, type MessageKey } from "../i18n";
import { shortcuts } from "../shortcuts/registry";
import { hello, link, signOut } from "../state/connection";
import { followDirectory } from "../state/directory";
import { followIncidents } from "../state/incidents";
import { followTerminals } from "../state/terminals";
import { followVoice } from "../state/voice";
import { notice } from "../ui/notice";
import { VIEWS } from "../views";
import { IncomingCalls } from "../views/voice/IncomingCalls";
import { LangSwitch } from "./LangSwitch";
import { currentView, go } from "./navigation";
import { ShortcutHelp } from "./ShortcutHelp";

export function Shell() {
  useEffect(() => {
    const stops = [followIncidents(), followDirectory(), followVoice(), followTerminals()];
    return () => stops.forEach((s) => s());
  }, []);
  useEffect(() => {
    const offs = VIEWS.map((v, i) =>
      shortcuts.add({ keys: `alt+${i + 1}`, label: "shortcut.view", labelVars: { view: v.title }, run: () => go(v.id) }),
    );
    return () => offs.forEach((off) => off());
  }, []);
  // A view switched (a click, Alt+digit, the hash): focus goes to its content, so a keyboard or
  // screen-reader user lands where it changed, not back at the top of the page.
  const main = useRef<HTMLElement>(null);
  const shown = useRef(currentView.value);
  useEffect(() => {
    if (shown.current === currentView.value) return;
    shown.current = currentView.value;
    main.current?.focus();
  }, [currentView.value]);
  const h = hello.value;
  const view = VIEWS.find((v) => v.id === currentView.value) ?? VIEWS[0];
  const View = view.component;
  const observer = h?.role === "observer";
  return (
    <div class="shell" data-role={h?.role}>
      <a class="skip" href="#main">
        {t("app.skip")}
      </a>
      <header class="topbar">
        <span class="brand">{t("app.title")}</span>
        <span id="principal" class="who">
          {t("shell.principal", { principal: h?.principal ?? "" })}
        </span>
        <span id="role" class={`role role-${h?.role}`} data-role={h?.role}>
          {t("shell.role", { role: h ? t(`role.${h.role}` as MessageKey) : "" })}
        </span>
        <span id="link" class={`link link-${link.value}`} data-link={link.value} role="status" aria-label={t("link.label")}>
          {t(`link.${link.value}` as MessageKey)}
        </span>
        <span class="spacer" />
        <LangSwitch />
        <button id="signout" type="button" onClick={() => signOut()}>
          {t("shell.signout")}
        </button>
      </header>
      <nav class="nav" aria-label={t("shell.nav")}>
        <ul>
          {VIEWS.map((v, i) => (
            <li key={v.id}>
              <a
                href={`#/${v.id}`}
                data-view={v.id}
                aria-current={v.id === view.id ? "page" : undefined}
                aria-keyshortcuts={`Alt+${i + 1}`}
              >
                {t(v.title)}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" class="main" tabIndex={-1} ref={main}>
        {observer && (
          <p class="readonly" id="readonly-note">
            {t("shell.readonly")}
          </p>
        )}
        <IncomingCalls />
        <View />
      </main>
      <div class="status" role="status" aria-live="polite" id="notice">
        {notice.value}
      </div>
      <ShortcutHelp />
    </div>
  );
}
