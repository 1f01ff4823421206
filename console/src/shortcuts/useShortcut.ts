import { useEffect, useRef } from "preact/hooks";
import { shortcuts, type Shortcut } from "./registry";

/** Registers `s` while the calling component is mounted (its `run` may change every render). */
export function useShortcut(s: Shortcut): void {
  const latest = useRef(s);
  latest.current = s;
  useEffect(
    () => shortcuts.add({ ...s, run: (e) => latest.current.run(e) }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [s.keys, s.label, JSON.stringify(s.labelVars ?? {})],
  );
}
