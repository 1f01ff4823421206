// Conferences: create one in the current incident; add a target, a live call, the console's own
// audio or a field terminal; per member: who is talking, mute/unmute, kick; end.
import { useState } from "preact/hooks";
import { LevelMeter } from "../../audio/LevelMeter";
import { t, tValue } from "../../i18n";
import { call } from "../../state/connection";
import { endpoints } from "../../state/directory";
import { selectedIncident } from "../../state/incidents";
import {
  addMember,
  calls,
  conferences,
  consoleAudio,
  createConference,
  endConference,
  liveCalls,
  moveCallIn,
  type Conference,
  type Member,
} from "../../state/voice";
import { Command } from "../../ui/Command";
import { Table } from "../../ui/Table";

function MemberRow({ conf, m }: { conf: Conference; m: Member }) {
  const gone = m.state === "left";
  // A call moved in has no target: its far end, as the call list knows it.
  const moved = m.call_id ? calls.value.get(m.call_id)?.remote_uri : null;
  const who = m.console ? t("voice.conf.console") : (m.target ?? moved ?? m.call_id ?? m.member_id);
  const ids = { conference_id: conf.conference_id, member_id: m.member_id };
  return (
    <tr data-member={m.member_id} data-target={m.target ?? ""} data-state={m.state} data-talking={String(m.talking)}>
      <td class="mono">{who}</td>
      <td>
        <span class={`badge member-${m.state}`}>{tValue(m.state)}</span>
        {gone && m.cause ? <span class="muted"> {tValue(m.cause)}</span> : null}
      </td>
      <td>
        {m.talking && !gone ? (
          <span class="talking" data-talking="true">
            {t("voice.conf.talking")}
          </span>
        ) : null}
      </td>
      <td class="actions">
        {!gone &&
          (m.muted ? (
            <Command method="conference.unmute" class="member-unmute" run={() => call("conference.unmute", ids)}>
              {t("voice.conf.unmute")}
            </Command>
          ) : (
            <Command method="conference.mute" class="member-mute" run={() => call("conference.mute", ids)}>
              {t("voice.conf.mute")}
            </Command>
          ))}
        {!gone && (
          <Command method="conference.remove" class="member-kick" run={() => call("conference.remove", ids)}>
            {t("voice.conf.kick")}
          </Command>
        )}
      </td>
    </tr>
  );
}

/** A choice (a live call, a terminal) and its Add button. */
function PickAndAdd(p: { id: string; label: string; class: string; options: [string, string][]; add: (v: string) => Promise<unknown> }) {
  const [value, setValue] = useState("");
  return (
    <form onSubmit={(e) => e.preventDefault()}>
      <label for={p.id}>{p.label}</label>
      <select id={p.id} value={value} onChange={(e) => setValue((e.target as HTMLSelectElement).value)}>
        <option value="">{t("voice.conf.pick")}</option>
        {p.options.map(([v, text]) => (
          <option key={v} value={v}>
            {text}
          </option>
        ))}
      </select>
      <Command
        method="conference.add"
        type="submit"
        class={p.class}
        disabled={!value}
        run={async () => {
          await p.add(value);
          setValue("");
        }}
      >
        {t("voice.conf.add")}
      </Command>
    </form>
  );
}

function AddMember({ conf }: { conf: Conference }) {
  const [target, setTarget] = useState("");
  const id = conf.conference_id;
  const inConf = new Set([...conf.members.values()].filter((m) => m.state !== "left").map((m) => m.call_id));
  const movable = liveCalls.value.filter((c) => c.state === "connected" && !inConf.has(c.call_id));
  const terminals = endpoints.value.filter((ep) => ep.kind === "terminal");
  const hasConsole = consoleAudio.value.has(`conf:${id}`);
  return (
    <div class="conf-add">
      <form onSubmit={(e) => e.preventDefault()}>
        <label for={`conf-target-${id}`}>{t("voice.conf.addTarget")}</label>
        <input id={`conf-target-${id}`} class="conf-target" list="voice-targets" value={target} onInput={(e) => setTarget((e.target as HTMLInputElement).value)} />
        <Command
          method="conference.add"
          type="submit"
          class="conf-add-target"
          disabled={!target.trim()}
          run={async () => {
            await addMember(id, { target: target.trim() });
            setTarget("");
          }}
        >
          {t("voice.conf.add")}
        </Command>
      </form>
      <PickAndAdd
        id={`conf-call-${id}`}
        label={t("voice.conf.addCall")}
        class="conf-add-call"
        options={movable.map((c) => [c.call_id, c.remote_uri ?? c.call_id])}
        add={(callId) => moveCallIn(id, callId)}
      />
      <PickAndAdd
        id={`conf-terminal-${id}`}
        label={t("voice.conf.addTerminal")}
        class="conf-add-terminal"
        options={terminals.map((ep) => [ep.name, ep.display_name ?? ep.name])}
        add={(terminalId) => addMember(id, { terminal_id: terminalId })}
      />
      <Command method="conference.add" class="conf-add-console" disabled={hasConsole} run={() => addMember(id, { console: true })}>
        {t("voice.conf.addConsole")}
      </Command>
    </div>
  );
}

function ConferenceCard({ conf }: { conf: Conference }) {
  const members = [...conf.members.values()];
  const audio = consoleAudio.value.get(`conf:${conf.conference_id}`);
  const headId = `conf-h-${conf.conference_id}`;
  return (
    <section class="conference" data-conference={conf.conference_id} aria-labelledby={headId}>
      <header class="conf-head">
        <h3 id={headId}>{conf.title || t("voice.conf.untitled")}</h3>
        {conf.dial_in ? <span class="mono">{t("voice.conf.dialIn", { number: conf.dial_in.number })}</span> : null}
        {audio?.mic && <LevelMeter level={audio.mic.level} label={t("voice.meter.mic")} />}
        {audio && <LevelMeter level={audio.speaker.level} label={t("voice.meter.speaker")} />}
        <Command method="conference.mute" class="conf-mute-all" run={() => call("conference.mute", { conference_id: conf.conference_id, all_but_chair: true })}>
          {t("voice.conf.muteAll")}
        </Command>
        <Command method="conference.end" class="conf-end" run={() => endConference(conf.conference_id)}>
          {t("voice.conf.end")}
        </Command>
      </header>
      {members.length === 0 ? (
        <p class="muted">{t("voice.conf.empty")}</p>
      ) : (
        <Table class="conf-members" caption={t("voice.conf.members")} cols={["voice.conf.member", "voice.col.state", "voice.conf.talkingCol", "voice.col.actions"]}>
          {members.map((m) => (
            <MemberRow key={m.member_id} conf={conf} m={m} />
          ))}
        </Table>
      )}
      <AddMember conf={conf} />
    </section>
  );
}

export function ConferencePanel() {
  const [title, setTitle] = useState("");
  const live = [...conferences.value.values()].filter((c) => c.state !== "ended");
  return (
    <div class="conferences">
      <form class="conf-create" onSubmit={(e) => e.preventDefault()}>
        <label for="conf-title">{t("voice.conf.title")}</label>
        <input id="conf-title" value={title} maxLength={200} onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />
        <Command
          method="conference.create"
          type="submit"
          id="conf-create"
          run={async () => {
            await createConference(title.trim(), selectedIncident.value);
            setTitle("");
          }}
        >
          {t("voice.conf.create")}
        </Command>
      </form>
      {live.length === 0 ? <p class="muted">{t("voice.conf.none")}</p> : live.map((c) => <ConferenceCard key={c.conference_id} conf={c} />)}
    </div>
  );
}
