import { useState } from "preact/hooks";
import { t } from "../i18n";
import { controlUrl, link, linkWhy, signIn } from "../state/connection";
import { LangSwitch } from "./LangSwitch";

export function SignIn() {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    let url: string;
    try {
      url = await controlUrl();
    } catch (x) {
      setError(t("signin.unreachable", { why: x instanceof Error ? x.message : String(x) }));
      setBusy(false);
      return;
    }
    try {
      await signIn(url, token.trim());
    } catch (x) {
      setError(t("signin.refused", { why: x instanceof Error ? x.message : String(x) }));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin" id="main">
      <div class="signin-lang">
        <LangSwitch />
      </div>
      <form class="signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">{t("app.title")}</h1>
        <h2>{t("signin.title")}</h2>
        <label for="token">{t("signin.token")}</label>
        <input
          id="token"
          type="password"
          autocomplete="off"
          required
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          aria-describedby="signin-help"
        />
        <p id="signin-help" class="muted">
          {t("signin.help")}
        </p>
        <button id="signin-button" type="submit" disabled={busy || token.trim() === ""}>
          {busy ? t("signin.connecting") : t("signin.submit")}
        </button>
        <p id="signin-error" class="error" role="alert">
          {error || (busy && link.value === "connecting" && linkWhy.value ? t("signin.unreachable", { why: linkWhy.value }) : "")}
        </p>
      </form>
    </main>
  );
}
