// A table with translated column headers (scope="col"); rows are the children.
import type { ComponentChildren } from "preact";
import { t, type MessageKey } from "../i18n";

export function Table({
  cols,
  children,
  id,
}: {
  cols: readonly MessageKey[];
  children: ComponentChildren;
  id?: string;
}) {
  return (
    <table class="dir-table" id={id}>
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
