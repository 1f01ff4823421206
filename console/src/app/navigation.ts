// The shown view, kept in the URL hash (#/directory) so a reload or a bookmark keeps it.
import { signal } from "@preact/signals";
import { VIEWS } from "../views";

function fromHash(): string {
  const id = (globalThis.location?.hash ?? "").replace(/^#\/?/, "").split("/")[0];
  return VIEWS.some((v) => v.id === id) ? id : VIEWS[0].id;
}

export const currentView = signal<string>(fromHash());

export function go(id: string): void {
  currentView.value = id;
  if (globalThis.location && globalThis.location.hash !== `#/${id}`) globalThis.location.hash = `#/${id}`;
}

globalThis.addEventListener?.("hashchange", () => {
  currentView.value = fromHash();
});
