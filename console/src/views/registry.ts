// What a view is. Each view lives in its own folder (src/views/<id>/) whose index.ts exports
// one ViewDef; src/views/index.ts lists them in the navigation's order.
import type { ComponentType } from "preact";
import type { MessageKey } from "../i18n";

export interface ViewDef {
  /** The URL hash (#/<id>) and the nav item's data-view. */
  id: string;
  /** Its name in the navigation (an i18n key). */
  title: MessageKey;
  component: ComponentType;
}
