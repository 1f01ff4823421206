// The shell's status line (an aria-live region): the last failure of a command.
import { signal } from "@preact/signals";
import { t } from "../i18n";
import { RemoteError } from "../protocol/envelope";

export const notice = signal<string>("");

export function reportFailure(what: string, e: unknown): void {
  const reason = e instanceof RemoteError ? `${e.reason}: ${e.message}` : e instanceof Error ? e.message : String(e);
  notice.value = t("command.failed", { what, reason });
}
