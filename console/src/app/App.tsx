import { useEffect } from "preact/hooks";
import { lang, t } from "../i18n";
import { shortcuts } from "../shortcuts/registry";
import { hello } from "../state/connection";
import { Shell } from "./Shell";
import { SignIn } from "./SignIn";

export function App() {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => void shortcuts.dispatch(e);
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  useEffect(() => {
    document.documentElement.lang = lang.value;
    document.title = t("app.title");
  }, [lang.value]);
  return hello.value === null ? <SignIn /> : <Shell />;
}
