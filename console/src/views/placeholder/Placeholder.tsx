import { t } from "../../i18n";
import type { ViewDef } from "../registry";

/** A view still to be built: named in the navigation, says so when opened. */
export function placeholder(id: string, title: ViewDef["title"]): ViewDef {
  function Placeholder() {
    return (
      <section class="view placeholder" aria-labelledby={`${id}-title`}>
        <h1 id={`${id}-title`}>{t(title)}</h1>
        <p>{t("view.placeholder")}</p>
      </section>
    );
  }
  return { id, title, component: Placeholder };
}
