// A button bound to one control-channel method: disabled when the signed-in role may not call
// it (the schema's roles; the gateway refuses anyway) or when the link is down, with the reason
// as its title. Failures go to the shell's status line.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { t } from "../i18n";
import type { Method } from "../protocol/generated";
import { can, online } from "../state/connection";
import { reportFailure } from "./notice";

interface Props {
  method: Method;
  run?: () => Promise<unknown> | void;
  children: ComponentChildren;
  type?: "button" | "submit";
  id?: string;
  class?: string;
  disabled?: boolean;
  "aria-label"?: string;
}

export function Command({ method, run, children, type = "button", disabled, ...rest }: Props) {
  const [busy, setBusy] = useState(false);
  const allowed = can(method);
  const off = !allowed || !online.value || busy || disabled === true;
  const why = !allowed ? t("command.forbidden") : !online.value ? t("command.offline") : undefined;
  const onClick = run
    ? async () => {
        setBusy(true);
        try {
          await run();
        } catch (e) {
          reportFailure(method, e);
        } finally {
          setBusy(false);
        }
      }
    : undefined;
  return (
    <button {...rest} type={type} disabled={off} title={why} data-method={method} onClick={onClick}>
      {children}
    </button>
  );
}
