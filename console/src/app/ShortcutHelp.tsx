import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../i18n";
import { shortcuts } from "../shortcuts/registry";
import { useShortcut } from "../shortcuts/useShortcut";

/** The list of the shortcuts in force ("?" opens it, Escape closes it). */
export function ShortcutHelp() {
  const [open, setOpen] = useState(false);
  const [, setTick] = useState(0);
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => shortcuts.onChange(() => setTick((n) => n + 1)), []);
  useShortcut({ keys: "?", label: "shortcut.help", run: () => setOpen(true) });
  useEffect(() => {
    const d = dialog.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={dialog} class="shortcut-help" aria-labelledby="shortcuts-title" onClose={() => setOpen(false)}>
      <h2 id="shortcuts-title">{t("shell.shortcuts")}</h2>
      <table>
        <tbody>
          {shortcuts.list().map((s) => (
            <tr key={`${s.keys}-${s.label}`}>
              <td>
                <kbd>{s.keys}</kbd>
              </td>
              <td>{t(s.label, s.labelVars)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <button type="button" onClick={() => setOpen(false)}>
        {t("shell.shortcuts.close")}
      </button>
    </dialog>
  );
}
