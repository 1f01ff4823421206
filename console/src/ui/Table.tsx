// A table with translated column headers (scope="col"); rows are the children.
import type { ComponentChildren } from "preact";
import { t, type MessageKey } from "../i18n";

export function Table({
  cols,
  children,
  id,
  caption,
  class: cls = "dir-table",
}: {
  cols: readonly MessageKey[];
  children: ComponentChildren;
  id?: string;
  /** Names the table for a screen reader (not shown). */
  caption?: string;
  class?: string;
}) {
  return (
    <table class={cls} id={id}>
      {caption && <caption class="sr-only">{caption}</caption>}
      <thead>
        <tr>
          {cols.map((c) => (
            <th key={c} scope="col">
              {t(c)}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}
