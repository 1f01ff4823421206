// The video wall: each tile a terminal's stream pulled through the control channel (video.pull;
// when the stream is `publishing`, video.watch gives Janus's offer, the page answers with
// video.answer: WebRTC in the page, signalled only through the protocol). A tile shows its
// terminal's name and the stream's state; closing it unwatches (video.unwatch). Wall mode fills
// the screen (a video wall), Escape leaves it.
import { signal } from "@preact/signals";
import { useEffect, useRef } from "preact/hooks";
import { t, tValue } from "../../i18n";
import { call, onEvent, readyCount } from "../../state/connection";
import type { GatewayEvent } from "../../protocol/envelope";
import { terminalName } from "../../state/terminals";
import { newKey } from "../../ui/idempotency";
import { reportFailure } from "../../ui/notice";
import { useShortcut } from "../../shortcuts/useShortcut";

interface Tile {
  stream_id: string;
  terminal_id: string;
  state: string;
  stream: MediaStream | null;
  watch_id: string | null;
}

export const wall = signal<ReadonlyMap<string, Tile>>(new Map());
export const wallMode = signal(false);
const peers = new Map<string, RTCPeerConnection>();
const starting = new Set<string>(); // a video.watch under way: the event and video.get may both ask

function patch(streamId: string, p: Partial<Tile>): void {
  const old = wall.value.get(streamId);
  if (!old) return;
  const next = new Map(wall.value);
  next.set(streamId, { ...old, ...p });
  wall.value = next;
}

function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
  });
}

interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

async function watch(streamId: string): Promise<void> {
  if (peers.has(streamId) || starting.has(streamId)) return;
  starting.add(streamId);
  try {
    await startWatch(streamId);
  } finally {
    starting.delete(streamId);
  }
}

async function startWatch(streamId: string): Promise<void> {
  const res = (await call("video.watch", { stream_id: streamId })) as {
    watch_id: string;
    sdp: string;
    ice_servers?: IceServer[];
  };
  const pc = new RTCPeerConnection({ iceServers: res.ice_servers ?? [] });
  peers.set(streamId, pc);
  pc.ontrack = (ev) =>
    patch(streamId, { stream: ev.streams[0] ?? new MediaStream([ev.track]) });
  try {
    await pc.setRemoteDescription({ type: "offer", sdp: res.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    await call("video.answer", {
      watch_id: res.watch_id,
      sdp: pc.localDescription?.sdp ?? "",
    });
    patch(streamId, { watch_id: res.watch_id });
  } catch (e) {
    pc.close();
    peers.delete(streamId);
    await call("video.unwatch", { watch_id: res.watch_id }).catch(
      () => undefined,
    );
    throw e;
  }
}

/** Pulls `terminalId`'s camera into the wall (its live stream if it has one). */
export async function pull(
  terminalId: string,
  sessionId: string | null,
): Promise<void> {
  const s = (await call("video.pull", {
    terminal_id: terminalId,
    idempotency_key: newKey(),
    ...(sessionId ? { session_id: sessionId } : {}),
  })) as { stream_id: string; state: string };
  if (!wall.value.has(s.stream_id)) {
    const next = new Map(wall.value);
    next.set(s.stream_id, {
      stream_id: s.stream_id,
      terminal_id: terminalId,
      state: s.state,
      stream: null,
      watch_id: null,
    });
    wall.value = next;
  }
  // A stream already live: watch at once; else when its video.state says publishing.
  const now = (await call("video.get", { stream_id: s.stream_id })) as {
    state: string;
  };
  patch(s.stream_id, { state: now.state });
  if (now.state === "publishing") await watch(s.stream_id);
}

export async function closeTile(streamId: string): Promise<void> {
  const tile = wall.value.get(streamId);
  peers.get(streamId)?.close();
  peers.delete(streamId);
  const next = new Map(wall.value);
  next.delete(streamId);
  wall.value = next;
  if (tile?.watch_id)
    await call("video.unwatch", { watch_id: tile.watch_id }).catch(
      () => undefined,
    );
}

function drop(streamId: string): void {
  peers.get(streamId)?.close();
  peers.delete(streamId);
  patch(streamId, { stream: null, watch_id: null });
}

/** A tile's stream changed (whichever view is shown): watched once publishing, let go when it
 * ends. */
function onVideoState(e: GatewayEvent): void {
  const d = e.data as { stream_id: string; state: string };
  if (!wall.value.has(d.stream_id)) return;
  patch(d.stream_id, { state: d.state });
  if (d.state === "publishing")
    watch(d.stream_id).catch((err) => reportFailure("video.watch", err));
  if (d.state === "stopped" || d.state === "failed") drop(d.stream_id);
}

/** After a reconnect: the gateway ended this console's watches with its old connection, so each
 * tile's stream is watched again on the new one (a still picture otherwise). */
async function rewatchAll(): Promise<void> {
  for (const tile of [...wall.value.values()]) {
    drop(tile.stream_id);
    const now = (await call("video.get", { stream_id: tile.stream_id })) as {
      state: string;
    };
    patch(tile.stream_id, { state: now.state });
    if (now.state === "publishing") await watch(tile.stream_id);
  }
}

onEvent((e) => e.type === "video.state" && onVideoState(e));
let readySeen = readyCount.value;
readyCount.subscribe((n) => {
  if (n > readySeen && readySeen > 0)
    rewatchAll().catch((err) => reportFailure("video.watch", err));
  readySeen = n;
});

function Video({
  stream,
  label,
}: {
  stream: MediaStream | null;
  label: string;
}) {
  const el = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (el.current && el.current.srcObject !== stream)
      el.current.srcObject = stream;
  }, [stream]);
  return <video ref={el} autoplay muted playsInline aria-label={label} />;
}

export function VideoWall() {
  useShortcut({
    keys: "alt+w",
    label: "terminals.shortcut.wall",
    run: () => (wallMode.value = !wallMode.value),
  });
  useEffect(() => {
    if (!wallMode.value) return;
    const onKey = (e: KeyboardEvent) =>
      e.key === "Escape" && (wallMode.value = false);
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [wallMode.value]);
  const tiles = [...wall.value.values()];
  const cols = Math.max(1, Math.ceil(Math.sqrt(tiles.length)));
  return (
    <section
      class={`video-wall${wallMode.value ? " wall-mode" : ""}`}
      aria-labelledby="wall-title"
      id="video-wall"
    >
      <header class="view-head">
        <h2 id="wall-title">{t("terminals.wall")}</h2>
        <button
          type="button"
          id="wall-mode"
          aria-pressed={wallMode.value}
          onClick={() => (wallMode.value = !wallMode.value)}
        >
          {wallMode.value
            ? t("terminals.wall.leave")
            : t("terminals.wall.enter")}
        </button>
      </header>
      {tiles.length === 0 ? (
        <p class="muted">{t("terminals.wall.empty")}</p>
      ) : (
        <div
          class="wall-grid"
          style={{ gridTemplateColumns: `repeat(${cols}, 1fr)` }}
        >
          {tiles.map((tile) => {
            const name = terminalName(tile.terminal_id);
            return (
              <figure
                key={tile.stream_id}
                class="wall-tile"
                data-stream={tile.stream_id}
                data-terminal={tile.terminal_id}
                data-state={tile.state}
                data-watch={tile.watch_id ?? ""}
              >
                <Video
                  stream={tile.stream}
                  label={t("terminals.wall.video", { name })}
                />
                <figcaption>
                  <span class="wall-name">{name}</span>
                  <span class="muted">{tValue(tile.state)}</span>
                  <button
                    type="button"
                    class="wall-close"
                    aria-label={t("terminals.wall.close", { name })}
                    onClick={() => void closeTile(tile.stream_id)}
                  >
                    {t("terminals.wall.closeMark")}
                  </button>
                </figcaption>
              </figure>
            );
          })}
        </div>
      )}
    </section>
  );
}
