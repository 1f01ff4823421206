// Speakers, groups and zones of the directory as check boxes, with a search.
import { useState } from "preact/hooks";
import { t } from "../../i18n";
import { endpoints, groups, matches, zones } from "../../state/directory";

export type Picked = { speakers: Set<string>; groups: Set<string>; zones: Set<string> };

function toggle(set: Set<string>, v: string, on: boolean): Set<string> {
  const next = new Set(set);
  if (on) next.add(v);
  else next.delete(v);
  return next;
}

export function TargetPicker({ picked, setPicked }: { picked: Picked; setPicked: (p: Picked) => void }) {
  const [q, setQ] = useState("");
  const speakers = endpoints.value.filter((ep) => ep.kind === "speaker" && matches(ep, q));
  const gs = groups.value.filter((g) => g.toLowerCase().includes(q.toLowerCase()));
  const zs = zones.value.filter((z) => z.name.toLowerCase().includes(q.toLowerCase()));
  const box = (kind: keyof Picked, name: string, label: string) => (
    <li key={`${kind}:${name}`}>
      <label class="check">
        <input
          type="checkbox"
          name={`bc-${kind}`}
          value={name}
          checked={picked[kind].has(name)}
          onChange={(e) => setPicked({ ...picked, [kind]: toggle(picked[kind], name, (e.target as HTMLInputElement).checked) })}
        />
        {label}
      </label>
    </li>
  );
  return (
    <fieldset class="bc-targets">
      <legend>{t("broadcast.targets")}</legend>
      <label for="bc-search">{t("broadcast.search")}</label>
      <input id="bc-search" type="search" value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
      <div class="bc-lists">
        <section aria-labelledby="bc-speakers-title">
          <h3 id="bc-speakers-title">{t("directory.speakers")}</h3>
          <ul>{speakers.map((ep) => box("speakers", ep.name, ep.display_name ?? ep.name))}</ul>
        </section>
        <section aria-labelledby="bc-groups-title">
          <h3 id="bc-groups-title">{t("directory.groups")}</h3>
          <ul>{gs.map((g) => box("groups", g, g))}</ul>
        </section>
        <section aria-labelledby="bc-zones-title">
          <h3 id="bc-zones-title">{t("directory.zones")}</h3>
          <ul>{zs.map((z) => box("zones", z.name, z.name))}</ul>
        </section>
      </div>
    </fieldset>
  );
}
