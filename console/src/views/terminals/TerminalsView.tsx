// The Terminals view: the terminals (presence, status, last fix) beside the map of their last
// positions and trails; instruct the ones ticked (terminal.instruct) and follow each delivery
// live (queued, delivered, acknowledged, or sent by SMS instead, with the SMS's own state); pull a
// terminal's camera into the video wall; bring a responder into a conference (conference.add
// terminal_id: the terminal's microphone joins through voice.bridge).
import { useState } from "preact/hooks";
import { formatTime, t, tValue } from "../../i18n";
import { selectedIncident } from "../../state/incidents";
import {
  instructions,
  recordInstruction,
  terminals,
  trails,
} from "../../state/terminals";
import { addMember, conferences, createConference } from "../../state/voice";
import { call, mapTiles } from "../../state/connection";
import { Command } from "../../ui/Command";
import { newKey } from "../../ui/idempotency";
import { Table } from "../../ui/Table";
import { MapCanvas } from "./MapCanvas";
import { validTileUrl } from "./map";
import { pull, VideoWall, wallMode } from "./VideoWall";

// This console's own tile URL (browser storage) wins over the gateway's (config.json map_tiles,
// http.console_map_tiles, whose origin the page's CSP allows); with neither, nothing is fetched.
const TILE_KEY = "dispatch.console.tileUrl";

function storedTileUrl(): string {
  try {
    return localStorage.getItem(TILE_KEY) ?? "";
  } catch {
    return "";
  }
}

export function TerminalsView() {
  const [picked, setPicked] = useState<ReadonlySet<string>>(new Set());
  const [text, setText] = useState("");
  const [smsFallback, setSmsFallback] = useState(true);
  const [ackTimeout, setAckTimeout] = useState(60);
  const [conference, setConference] = useState("");
  const [tileDraft, setTileDraft] = useState(storedTileUrl());
  const [tileUrl, setTileUrl] = useState<string | null>(
    validTileUrl(storedTileUrl()),
  );
  const list = [...terminals.value.values()];
  const liveConfs = [...conferences.value.values()].filter(
    (c) => c.state !== "ended",
  );
  const toggle = (id: string) => {
    const next = new Set(picked);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setPicked(next);
  };
  const instruct = async () => {
    const [first, ...more] = [...picked];
    if (first === undefined) return;
    const r = (await call("terminal.instruct", {
      targets: [first, ...more],
      text: text.trim(),
      ack_timeout_s: ackTimeout,
      fallback: smsFallback ? "sms" : "none",
      idempotency_key: newKey(),
      ...(selectedIncident.value ? { session_id: selectedIncident.value } : {}),
    })) as { instruction_id: string; terminals: { terminal_id: string }[] };
    recordInstruction(
      r.instruction_id,
      text.trim(),
      r.terminals.map((x) => x.terminal_id),
    );
    setText("");
  };
  const bringIn = async (terminalId: string) => {
    const name = terminals.value.get(terminalId)?.display_name ?? terminalId;
    const confId =
      conference ||
      (
        await createConference(
          t("terminals.callTitle", { name }),
          selectedIncident.value,
        )
      ).conference_id;
    setConference(confId);
    await addMember(confId, { terminal_id: terminalId });
  };
  const saveTiles = () => {
    const ok = validTileUrl(tileDraft);
    try {
      if (ok) localStorage.setItem(TILE_KEY, ok);
      else localStorage.removeItem(TILE_KEY);
    } catch {
      /* storage refused: the URL holds for this page only */
    }
    setTileUrl(ok);
  };
  const sent = [...instructions.value.values()].reverse();
  return (
    <section
      class={`view terminals${wallMode.value ? " walled" : ""}`}
      aria-labelledby="terminals-title"
    >
      <header class="view-head">
        <h1 id="terminals-title">{t("view.terminals")}</h1>
        <span class="muted">
          {t("terminals.count", {
            n: list.length,
            online: list.filter((x) => x.presence === "online").length,
          })}
        </span>
      </header>
      <div class="terminals-grid">
        <div class="terminals-side">
          <Table
            cols={[
              "terminals.col.pick",
              "terminals.col.name",
              "terminals.col.presence",
              "terminals.col.fix",
              "terminals.col.actions",
            ]}
          >
            {list.map((x) => {
              const name = x.display_name ?? x.terminal_id;
              return (
                <tr
                  key={x.terminal_id}
                  data-terminal={x.terminal_id}
                  data-presence={x.presence}
                >
                  <td>
                    <input
                      type="checkbox"
                      class="terminal-pick"
                      checked={picked.has(x.terminal_id)}
                      aria-label={t("terminals.pick", { name })}
                      onChange={() => toggle(x.terminal_id)}
                    />
                  </td>
                  <td>{name}</td>
                  <td>
                    <span
                      class={`presence presence-${x.presence === "online" || x.presence === "offline" ? x.presence : "unknown"}`}
                    >
                      {tValue(x.presence)}
                    </span>
                    {x.status && <span class="muted"> {x.status}</span>}
                  </td>
                  <td class="muted">
                    {x.position
                      ? formatTime(x.position.time)
                      : t("terminals.noFix")}
                  </td>
                  <td class="row-actions">
                    <Command
                      method="video.pull"
                      class="terminal-pull"
                      aria-label={t("terminals.pull", { name })}
                      run={() => pull(x.terminal_id, selectedIncident.value)}
                    >
                      {t("terminals.pullShort")}
                    </Command>
                    <Command
                      method="conference.add"
                      class="terminal-bring"
                      aria-label={t("terminals.bringIn", { name })}
                      run={() => bringIn(x.terminal_id)}
                    >
                      {t("terminals.bringShort")}
                    </Command>
                  </td>
                </tr>
              );
            })}
          </Table>
          <label class="field">
            <span>{t("terminals.conference")}</span>
            <select
              id="terminals-conference"
              value={conference}
              onChange={(e) =>
                setConference((e.currentTarget as HTMLSelectElement).value)
              }
            >
              <option value="">{t("terminals.newConference")}</option>
              {liveConfs.map((c) => (
                <option key={c.conference_id} value={c.conference_id}>
                  {c.title ?? c.conference_id}
                </option>
              ))}
            </select>
          </label>
          <form
            class="instruct-form"
            aria-labelledby="instruct-title"
            onSubmit={(e) => {
              e.preventDefault();
            }}
          >
            <h2 id="instruct-title">{t("terminals.instruct")}</h2>
            <label class="field">
              <span>{t("terminals.instruct.text")}</span>
              <textarea
                id="instruct-text"
                rows={2}
                maxLength={1000}
                value={text}
                onInput={(e) =>
                  setText((e.currentTarget as HTMLTextAreaElement).value)
                }
              />
            </label>
            <label class="inline">
              <input
                type="checkbox"
                id="instruct-sms"
                checked={smsFallback}
                onChange={() => setSmsFallback(!smsFallback)}
              />
              {t("terminals.instruct.sms")}
            </label>
            <label class="inline">
              {t("terminals.instruct.timeout")}
              <input
                type="number"
                id="instruct-timeout"
                min={1}
                max={86400}
                value={ackTimeout}
                onInput={(e) =>
                  setAckTimeout(
                    Math.max(
                      1,
                      Number((e.currentTarget as HTMLInputElement).value) || 60,
                    ),
                  )
                }
              />
            </label>
            <Command
              method="terminal.instruct"
              id="instruct-send"
              disabled={picked.size === 0 || text.trim() === ""}
              run={instruct}
            >
              {t("terminals.instruct.send", { n: picked.size })}
            </Command>
          </form>
          <ul class="instructions" aria-label={t("terminals.instructions")}>
            {sent.map((ins) => (
              <li
                key={ins.instruction_id}
                data-instruction={ins.instruction_id}
              >
                <span class="instruction-text">
                  {ins.text || ins.instruction_id}
                </span>
                <ul>
                  {[...ins.terminals].map(([tid, d]) => (
                    <li
                      key={tid}
                      class="delivery"
                      data-terminal={tid}
                      data-state={d.state}
                      data-sms={d.sms ?? ""}
                    >
                      {t("terminals.delivery", {
                        name: terminals.value.get(tid)?.display_name ?? tid,
                        state: tValue(d.state),
                      })}
                      {d.sms && (
                        <span class="muted">
                          {" "}
                          {t("terminals.delivery.sms", {
                            state: tValue(d.sms),
                          })}
                        </span>
                      )}
                      {d.error && <span class="muted"> {tValue(d.error)}</span>}
                    </li>
                  ))}
                </ul>
              </li>
            ))}
          </ul>
        </div>
        <div class="terminals-map">
          <MapCanvas
            terminals={list}
            trails={trails.value}
            selected={picked}
            tileUrl={tileUrl ?? mapTiles.value}
            onPick={toggle}
          />
          <div class="tile-setting">
            <label class="field">
              <span>{t("terminals.tiles")}</span>
              <input
                id="tile-url"
                type="url"
                placeholder={t("terminals.tiles.placeholder")}
                value={tileDraft}
                onInput={(e) =>
                  setTileDraft((e.currentTarget as HTMLInputElement).value)
                }
              />
            </label>
            <button type="button" id="tile-save" onClick={saveTiles}>
              {t("terminals.tiles.save")}
            </button>
          </div>
        </div>
      </div>
      <VideoWall />
    </section>
  );
}
