// Directory: phones, speakers, zones, terminals (with presence), groups; one search box over all.
import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import { formatTime, t, tValue, type MessageKey } from "../../i18n";
import { useShortcut } from "../../shortcuts/useShortcut";
import { Table } from "../../ui/Table";
import { endpoints, groups, matches, presence, zones, type Endpoint } from "../../state/directory";

function Section({
  id,
  titleKey,
  count,
  children,
}: {
  id: string;
  titleKey: MessageKey;
  count: number;
  children: ComponentChildren;
}) {
  return (
    <section class="dir-section" aria-labelledby={`dir-${id}`} data-section={id}>
      <h2 id={`dir-${id}`}>
        {t(titleKey)} <span class="count">{count}</span>
      </h2>
      {count === 0 ? <p class="muted">{t("directory.empty")}</p> : children}
    </section>
  );
}

const ENDPOINT_COLS: MessageKey[] = [
  "directory.col.name",
  "directory.col.display",
  "directory.col.address",
  "directory.col.groups",
];

function EndpointTable({ rows, withPresence }: { rows: Endpoint[]; withPresence?: boolean }) {
  return (
    <Table cols={withPresence ? [...ENDPOINT_COLS, "directory.col.presence", "directory.col.lastSeen"] : ENDPOINT_COLS}>
      {rows.map((ep) => {
        const p = presence.value.get(ep.name);
        const state = p?.presence === "online" || p?.presence === "offline" ? p.presence : "unknown";
        return (
          <tr key={ep.name} data-name={ep.name}>
            <td>{ep.name}</td>
            <td>{ep.display_name ?? ""}</td>
            <td class="mono">{ep.uri ?? ep.phone ?? ""}</td>
            <td>{ep.groups.join(", ")}</td>
            {withPresence && (
              <td>
                <span class={`presence presence-${state}`} data-presence={state}>
                  {state === "unknown" ? t("presence.unknown") : tValue(state)}
                </span>
              </td>
            )}
            {withPresence && <td>{p?.last_seen ? formatTime(p.last_seen) : ""}</td>}
          </tr>
        );
      })}
    </Table>
  );
}

export function DirectoryView() {
  const [query, setQuery] = useState("");
  const search = useRef<HTMLInputElement>(null);
  useShortcut({ keys: "/", label: "shortcut.search", run: () => search.current?.focus() });

  const hit = endpoints.value.filter((ep) => matches(ep, query));
  const kind = (k: string) => hit.filter((ep) => ep.kind === k);
  const q = query.toLowerCase().trim();
  const zoneRows = zones.value.filter((z) => !q || z.name.toLowerCase().includes(q));
  const groupRows = groups.value.filter((g) => !q || g.toLowerCase().includes(q));
  const members = (g: string) => endpoints.value.filter((ep) => ep.groups.includes(g)).map((ep) => ep.name);

  return (
    <section class="view directory" aria-labelledby="directory-title">
      <header class="view-head">
        <h1 id="directory-title">{t("view.directory")}</h1>
        <label class="search">
          <span class="sr-only">{t("directory.search")}</span>
          <input
            id="directory-search"
            ref={search}
            type="search"
            placeholder={t("directory.search")}
            value={query}
            onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
          />
        </label>
      </header>
      <div class="dir-grid">
        <Section id="phones" titleKey="directory.phones" count={kind("phone").length}>
          <EndpointTable rows={kind("phone")} />
        </Section>
        <Section id="terminals" titleKey="directory.terminals" count={kind("terminal").length}>
          <EndpointTable rows={kind("terminal")} withPresence />
        </Section>
        <Section id="speakers" titleKey="directory.speakers" count={kind("speaker").length}>
          <EndpointTable rows={kind("speaker")} />
        </Section>
        <Section id="zones" titleKey="directory.zones" count={zoneRows.length}>
          <Table cols={["directory.col.name", "directory.col.codec"]}>
            {zoneRows.map((z) => (
              <tr key={z.name} data-name={z.name}>
                <td>{z.name}</td>
                <td>{z.codec}</td>
              </tr>
            ))}
          </Table>
        </Section>
        <Section id="groups" titleKey="directory.groups" count={groupRows.length}>
          <Table cols={["directory.col.name", "directory.col.members"]}>
            {groupRows.map((g) => (
              <tr key={g} data-name={g}>
                <td>{g}</td>
                <td>{members(g).join(", ")}</td>
              </tr>
            ))}
          </Table>
        </Section>
        <Section id="trunks" titleKey="directory.trunks" count={kind("trunk").length}>
          <EndpointTable rows={kind("trunk")} />
        </Section>
      </div>
    </section>
  );
}
