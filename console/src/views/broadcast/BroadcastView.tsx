// Broadcast: targets from the directory (speakers, groups, zones); the console's microphone
// with push-to-talk (held button or Alt+T held), a file of broadcast.media_dir or text to
// speech; priority; each target's state live; stop.
import { useEffect, useState } from "preact/hooks";
import { LevelMeter } from "../../audio/LevelMeter";
import { t, tMaybe, tValue } from "../../i18n";
import { call } from "../../state/connection";
import { priorities } from "../../state/directory";
import { selectedIncident } from "../../state/incidents";
import { useShortcut } from "../../shortcuts/useShortcut";
import { Command } from "../../ui/Command";
import { newKey } from "../../ui/idempotency";
import { targetsOf } from "./broadcastModel";
import { attachMic, broadcasts, closeMic, follow, liveMic, setTalking, talking } from "./broadcastState";
import { TargetPicker, type Picked } from "./TargetPicker";

/** broadcast.start's default priority when the gateway has it, else its lowest. */
function defaultPriority(list: string[]): string {
  return list.includes("normal") ? "normal" : (list[list.length - 1] ?? "normal");
}
type SourceKind = "live" | "file" | "tts";

function Source({ kind, setKind, file, setFile, text, setText, language, setLanguage }: {
  kind: SourceKind; setKind: (k: SourceKind) => void; file: string; setFile: (v: string) => void;
  text: string; setText: (v: string) => void; language: "en" | "zh"; setLanguage: (v: "en" | "zh") => void;
}) {
  return (
    <fieldset class="bc-source">
      <legend>{t("broadcast.source")}</legend>
      {(["live", "file", "tts"] as const).map((k) => (
        <label key={k} class="check">
          <input type="radio" name="bc-source" value={k} checked={kind === k} onChange={() => setKind(k)} />
          {t(`broadcast.source.${k}`)}
        </label>
      ))}
      {kind === "file" && (
        <p>
          <label for="bc-file">{t("broadcast.file")}</label>
          <input id="bc-file" value={file} placeholder={t("broadcast.file.placeholder")} onInput={(e) => setFile((e.target as HTMLInputElement).value)} />
        </p>
      )}
      {kind === "tts" && (
        <p>
          <label for="bc-tts">{t("broadcast.tts")}</label>
          <textarea id="bc-tts" rows={2} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
          <label for="bc-lang">{t("broadcast.tts.language")}</label>
          <select id="bc-lang" value={language} onChange={(e) => setLanguage((e.target as HTMLSelectElement).value as "en" | "zh")}>
            <option value="zh">{t("broadcast.tts.zh")}</option>
            <option value="en">{t("broadcast.tts.en")}</option>
          </select>
        </p>
      )}
    </fieldset>
  );
}

function PushToTalk() {
  const live = liveMic.value;
  useShortcut({ keys: "alt+t", label: "broadcast.shortcut.talk", inInputs: true, run: () => setTalking(true) });
  useEffect(() => {
    // Held = talk: the registry sees key presses; the release of T or Alt ends the talk.
    const up = (e: KeyboardEvent) => {
      if (talking.value && (e.code === "KeyT" || e.key === "Alt")) setTalking(false);
    };
    const blur = () => setTalking(false);
    window.addEventListener("keyup", up);
    window.addEventListener("blur", blur);
    return () => {
      window.removeEventListener("keyup", up);
      window.removeEventListener("blur", blur);
    };
  }, []);
  if (!live) return <p class="muted">{t("broadcast.ptt.idle")}</p>;
  return (
    <div class="bc-ptt" data-talking={talking.value ? "yes" : "no"}>
      <button
        type="button"
        id="bc-ptt"
        class={talking.value ? "talking" : undefined}
        aria-pressed={talking.value}
        onPointerDown={() => setTalking(true)}
        onPointerUp={() => setTalking(false)}
        onPointerLeave={() => setTalking(false)}
      >
        {t(talking.value ? "broadcast.ptt.talking" : "broadcast.ptt.hold")}
      </button>
      <LevelMeter level={live.mic.level} label={t("broadcast.meter")} id="bc-mic-level" />
    </div>
  );
}

function Broadcasts() {
  const all = [...broadcasts.value.values()].reverse();
  if (all.length === 0) return <p class="muted">{t("broadcast.none")}</p>;
  return (
    <>
      {all.map((b) => (
        <div key={b.broadcast_id} class="bc-item" data-broadcast={b.broadcast_id} data-state={b.state}>
          <p>
            <span class={`badge bc-${b.state}`}>{tValue(b.state)}</span>{" "}
            {t("broadcast.summary", { source: tMaybe(`broadcast.source.${b.source}`) ?? b.source, priority: tValue(b.priority) })}
            {b.end_reason ? <span class="muted"> {tValue(b.end_reason)}</span> : null}{" "}
            {b.state !== "ended" && b.state !== "ending" && (
              <Command method="broadcast.stop" class="bc-stop" run={() => call("broadcast.stop", { broadcast_id: b.broadcast_id })}>
                {t("broadcast.stop")}
              </Command>
            )}
          </p>
          <table class="bc-target-table">
            <caption class="sr-only">{t("broadcast.targetStates")}</caption>
            <thead>
              <tr>
                <th scope="col">{t("broadcast.col.target")}</th>
                <th scope="col">{t("broadcast.col.state")}</th>
                <th scope="col">{t("broadcast.col.detail")}</th>
              </tr>
            </thead>
            <tbody>
              {[...b.targets.values()].map((x) => (
                <tr key={x.target} data-target={x.target} data-state={x.state}>
                  <td class="mono">{x.target}</td>
                  <td>
                    <span class={`badge bc-${x.state}`}>{tValue(x.state)}</span>
                  </td>
                  <td class="muted">{[x.sip_code, x.cause ? tValue(x.cause) : null, x.attempts > 1 ? `×${x.attempts}` : null].filter(Boolean).join(" · ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </>
  );
}

export function BroadcastView() {
  const [picked, setPicked] = useState<Picked>({ speakers: new Set(), groups: new Set(), zones: new Set() });
  const [kind, setKind] = useState<SourceKind>("live");
  const [file, setFile] = useState("");
  const [text, setText] = useState("");
  const [language, setLanguage] = useState<"en" | "zh">("zh");
  const [chosen, setPriority] = useState<string | null>(null);
  const priority = chosen !== null && priorities.value.includes(chosen) ? chosen : defaultPriority(priorities.value);
  const targets = targetsOf(picked.speakers, picked.groups, picked.zones, []);
  const source =
    kind === "live" ? { type: "live" as const } : kind === "file" ? { type: "file" as const, path: file.trim() } : { type: "tts" as const, text: text.trim(), language };
  const ready = targets.length > 0 && (kind === "live" || (kind === "file" ? file.trim() !== "" : text.trim() !== ""));
  const start = async () => {
    const session = selectedIncident.value;
    const b = (await call("broadcast.start", {
      targets: targets as [string, ...string[]],
      source,
      priority,
      idempotency_key: newKey(),
      ...(session ? { session_id: session } : {}),
    })) as Record<string, unknown>;
    follow(b);
    if (!session && typeof b.session_id === "string") selectedIncident.value = b.session_id;
    if (kind === "live") {
      closeMic();
      await attachMic(String(b.broadcast_id));
    }
  };
  return (
    <section class="view broadcast" aria-labelledby="bc-title">
      <header class="view-head">
        <h1 id="bc-title">{t("view.broadcast")}</h1>
      </header>
      <div class="voice-grid">
        <form class="panel bc-compose" onSubmit={(e) => e.preventDefault()} aria-labelledby="bc-compose-title">
          <h2 id="bc-compose-title">{t("broadcast.compose")}</h2>
          <TargetPicker picked={picked} setPicked={setPicked} />
          <Source kind={kind} setKind={setKind} file={file} setFile={setFile} text={text} setText={setText} language={language} setLanguage={setLanguage} />
          <label for="bc-priority">{t("broadcast.priority")}</label>
          <select id="bc-priority" value={priority} onChange={(e) => setPriority((e.target as HTMLSelectElement).value)}>
            {priorities.value.map((p) => (
              <option key={p} value={p}>
                {tValue(p)}
              </option>
            ))}
          </select>{" "}
          <Command method="broadcast.start" id="bc-start" type="submit" disabled={!ready} run={start}>
            {t("broadcast.start", { n: targets.length })}
          </Command>
        </form>
        <section class="panel" aria-labelledby="bc-live-title">
          <h2 id="bc-live-title">{t("broadcast.live")}</h2>
          <PushToTalk />
          <Broadcasts />
        </section>
      </div>
    </section>
  );
}
