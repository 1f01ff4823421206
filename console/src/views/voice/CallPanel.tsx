// Calls: dial (a typed target or one picked from the directory), the live calls with their
// commands (answer, reject, hang up, hold, console audio, listen-in), and for the selected call
// the DTMF pad and transfer.
import { useState } from "preact/hooks";
import { LevelMeter } from "../../audio/LevelMeter";
import { t, tValue } from "../../i18n";
import { call } from "../../state/connection";
import { endpoints } from "../../state/directory";
import { selectedIncident } from "../../state/incidents";
import {
  answer,
  calls,
  consoleAudio,
  dial,
  hangup,
  listen,
  selectedCall,
  stopAudio,
  talk,
  type CallInfo,
} from "../../state/voice";
import { Command } from "../../ui/Command";
import { Table } from "../../ui/Table";

const DTMF_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export function DialForm() {
  const [target, setTarget] = useState("");
  const dialable = endpoints.value.filter((ep) => ep.kind === "phone" || ep.kind === "trunk");
  const run = async () => {
    const v = target.trim();
    if (!v) return;
    await dial(v, selectedIncident.value);
    setTarget("");
  };
  return (
    <form
      class="voice-dial"
      onSubmit={(e) => {
        e.preventDefault();
      }}
    >
      <label for="voice-target">{t("voice.target")}</label>
      <input
        id="voice-target"
        list="voice-targets"
        value={target}
        placeholder={t("voice.target.placeholder")}
        onInput={(e) => setTarget((e.target as HTMLInputElement).value)}
      />
      <datalist id="voice-targets">
        {dialable.map((ep) => (
          <option key={ep.name} value={ep.name}>
            {ep.display_name ?? ep.uri ?? ep.name}
          </option>
        ))}
      </datalist>
      <Command method="call.dial" type="submit" id="voice-dial" run={run} disabled={!target.trim()}>
        {t("voice.dial")}
      </Command>
    </form>
  );
}

function AudioCell({ c }: { c: CallInfo }) {
  const a = consoleAudio.value.get(c.call_id);
  const live = c.state === "connected" || c.state === "held";
  if (a) {
    return (
      <span class="audio-cell">
        {a.mic && <LevelMeter level={a.mic.level} label={t("voice.meter.mic")} id={`mic-${c.call_id}`} />}
        <LevelMeter level={a.speaker.level} label={t("voice.meter.speaker")} id={`spk-${c.call_id}`} />
        <Command method="media.close" class="voice-audio-stop" run={() => stopAudio(c.call_id)}>
          {t(a.mode === "talk" ? "voice.audio.stopTalk" : "voice.audio.stopListen")}
        </Command>
      </span>
    );
  }
  return (
    <span class="audio-cell">
      <Command method="media.open" class="voice-talk" disabled={!live} run={() => talk(c.call_id)}>
        {t("voice.audio.talk")}
      </Command>
      <Command method="call.listen" class="voice-listen" disabled={!live} run={() => listen(c.call_id)}>
        {t("voice.audio.listen")}
      </Command>
    </span>
  );
}

function CallRow({ c }: { c: CallInfo }) {
  const ringingIn = c.direction === "inbound" && c.state === "ringing";
  const ended = c.state === "ended";
  const selected = selectedCall.value === c.call_id;
  return (
    <tr data-call={c.call_id} data-state={c.state} class={selected ? "selected" : undefined}>
      <td>
        <label class="check">
          <input
            type="radio"
            name="voice-selected"
            checked={selected}
            disabled={ended}
            onChange={() => (selectedCall.value = c.call_id)}
          />
          <span class="mono">{c.remote_uri ?? "—"}</span>
        </label>
      </td>
      <td>{t(c.direction === "inbound" ? "summary.direction.inbound" : "summary.direction.outbound")}</td>
      <td>
        <span class={`badge call-${c.state}`}>{tValue(c.state)}</span>
        {ended && c.cause ? <span class="muted"> {tValue(c.cause)}</span> : null}
      </td>
      <td class="actions">
        {ringingIn && (
          <Command method="call.answer" class="voice-answer" run={() => answer(c.call_id)}>
            {t("voice.answer")}
          </Command>
        )}
        {ringingIn && (
          <Command method="call.reject" class="voice-reject" run={() => call("call.reject", { call_id: c.call_id })}>
            {t("voice.reject")}
          </Command>
        )}
        {c.state === "connected" && (
          <Command method="call.hold" class="voice-hold" run={() => call("call.hold", { call_id: c.call_id })}>
            {t("voice.hold")}
          </Command>
        )}
        {c.state === "held" && (
          <Command method="call.unhold" class="voice-unhold" run={() => call("call.unhold", { call_id: c.call_id })}>
            {t("voice.unhold")}
          </Command>
        )}
        {!ended && !ringingIn && (
          <Command method="call.hangup" class="voice-hangup" run={() => hangup(c.call_id)}>
            {t("voice.hangup")}
          </Command>
        )}
      </td>
      <td>{!ended && !ringingIn && <AudioCell c={c} />}</td>
    </tr>
  );
}

export function CallTable() {
  const rows = [...calls.value.values()].reverse();
  if (rows.length === 0) return <p class="muted">{t("voice.noCalls")}</p>;
  return (
    <Table class="voice-calls" caption={t("voice.calls")} cols={["voice.col.remote", "voice.col.direction", "voice.col.state", "voice.col.actions", "voice.col.audio"]}>
      {rows.map((c) => (
        <CallRow key={c.call_id} c={c} />
      ))}
    </Table>
  );
}

export function SelectedCall() {
  const [transferTo, setTransferTo] = useState("");
  const c = selectedCall.value ? calls.value.get(selectedCall.value) : undefined;
  if (!c || c.state === "ended") return <p class="muted">{t("voice.noneSelected")}</p>;
  const live = c.state === "connected";
  return (
    <div class="voice-selected" data-call={c.call_id}>
      <p>
        {t("voice.selected")} <span class="mono">{c.remote_uri}</span>
      </p>
      <div class="dtmf" role="group" aria-label={t("voice.dtmf")}>
        {DTMF_KEYS.map((k) => (
          <Command
            key={k}
            method="call.dtmf"
            class="dtmf-key"
            disabled={!live}
            aria-label={t("voice.dtmf.key", { key: k })}
            run={() => call("call.dtmf", { call_id: c.call_id, digits: k })}
          >
            {k}
          </Command>
        ))}
      </div>
      <form class="voice-transfer" onSubmit={(e) => e.preventDefault()}>
        <label for="voice-transfer-target">{t("voice.transferTo")}</label>
        <input
          id="voice-transfer-target"
          list="voice-targets"
          value={transferTo}
          onInput={(e) => setTransferTo((e.target as HTMLInputElement).value)}
        />
        <Command
          method="call.transfer"
          type="submit"
          id="voice-transfer"
          disabled={!transferTo.trim() || !live}
          run={async () => {
            await call("call.transfer", { call_id: c.call_id, target: transferTo.trim() });
            setTransferTo("");
          }}
        >
          {t("voice.transfer")}
        </Command>
      </form>
    </div>
  );
}
