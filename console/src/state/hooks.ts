// Hooks a view uses to follow the gateway: load something on each (re)subscription, react to
// live events. Both stop when the component unmounts.
import { useEffect, useRef } from "preact/hooks";
import type { GatewayEvent } from "../protocol/envelope";
import { onEvent, readyCount } from "./connection";

/** Runs `load` now (when connected) and after every reconnect: lists that are not events
 * (call.list, broadcast.get, terminal.list, ...) are read again, since the link was down. */
export function useOnReady(load: () => void | Promise<unknown>): void {
  const latest = useRef(load);
  latest.current = load;
  useEffect(
    () =>
      readyCount.subscribe((n) => {
        if (n > 0) void Promise.resolve(latest.current()).catch(() => undefined);
      }),
    [],
  );
}

/** Calls `handler` for each live event whose type is in `types` (each event once, also across a
 * reconnect); with `replay`, first for those already held (the history, in seq order). */
export function useEvents(types: readonly string[], handler: (e: GatewayEvent) => void, replay = false): void {
  const latest = useRef(handler);
  latest.current = handler;
  const key = types.join(",");
  useEffect(() => onEvent((e) => types.includes(e.type) && latest.current(e), { replay }), [key, replay]);
}
