import { LANGS, lang, setLang, t, type Lang, type MessageKey } from "../i18n";

export function LangSwitch() {
  return (
    <label class="lang">
      <span class="sr-only">{t("lang.label")}</span>
      <select id="lang" value={lang.value} onChange={(e) => setLang((e.target as HTMLSelectElement).value as Lang)}>
        {LANGS.map((l) => (
          <option key={l} value={l}>
            {t(`lang.${l}` as MessageKey)}
          </option>
        ))}
      </select>
    </label>
  );
}
