// Camera and microphone when dispatch pulls them (docs/protocol.md, "Event data (video)"):
// a `video.request` event {stream_id, audio, video, ice_servers} -> getUserMedia -> an offer
// with every ICE candidate gathered (no trickle) -> `video.publish {stream_id, sdp}` -> the
// answer. The microphone into a phone call is the same dance ("Event data (voice from a
// terminal)"): `voice.request {bridge_id, ...}` -> `voice.publish`, whose answer comes only
// once the phone answers. Media goes to the media engine; only SDP passes over the control channel.

export const GATHER_TIMEOUT_MS = 10000;
export const DISCONNECTED_GRACE_MS = 3000;
export const VIDEO = { id: "stream_id", publish: "video.publish", stop: "video.stop", direction: "sendonly",
  answerTimeoutMs: 30000 };
// The phone's voice comes back on the same connection (sendrecv), played by `remote`.
export const VOICE = { id: "bridge_id", publish: "voice.publish", stop: "voice.hangup", direction: "sendrecv",
  answerTimeoutMs: 180000 };

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve(); // send what was gathered so far
    }, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

export class Publisher {
  // kind: VIDEO or VOICE; call(method, params, timeoutMs); onState(state, detail): "starting" |
  // "live" | "stopped" | "failed"; preview: a muted <video> of what is sent, remote: an
  // <audio> for what comes back (either may be null)
  constructor(kind, call, onState, { preview = null, remote = null } = {}) {
    this.kind = kind;
    this.call = call;
    this.onState = onState;
    this.preview = preview;
    this.remote = remote;
    this.stream = null;
    this.pc = null;
    this.streamId = null;
  }

  async publish(request) {
    const id = request[this.kind.id];
    if (typeof id !== "string" || this.streamId === id) return; // the same request pushed again
    this.close();
    this.streamId = id;
    this.onState("starting");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: request.audio !== false,
        video: request.video !== false ? { width: { ideal: 640 }, height: { ideal: 480 } } : false,
      });
      if (this.preview) this.preview.srcObject = this.stream;
      const pc = (this.pc = new RTCPeerConnection({ iceServers: request.ice_servers || [] }));
      for (const track of this.stream.getTracks()) {
        pc.addTransceiver(track, { direction: this.kind.direction, streams: [this.stream] });
      }
      pc.addEventListener("track", (ev) => {
        if (this.remote && pc === this.pc) this.remote.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      });
      // The far end gone without a word (the media engine died, the control link is down; a
      // dispatcher's stop or hang-up comes as an event, see ended()): ended once the link is
      // failed, closed, or disconnected for DISCONNECTED_GRACE_MS.
      let grace = null;
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== this.pc) return;
        clearTimeout(grace);
        const state = pc.connectionState;
        if (state === "connected") this.onState("live");
        if (state === "failed" || state === "closed") this.close("stopped");
        if (state === "disconnected") {
          grace = setTimeout(() => pc === this.pc && this.close("stopped"), DISCONNECTED_GRACE_MS);
        }
      });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const answer = await this.call(this.kind.publish, { [this.kind.id]: id, sdp: pc.localDescription.sdp },
        this.kind.answerTimeoutMs);
      if (pc !== this.pc) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      this.close(null);
      this.onState("failed", err.reason || err.name || String(err));
    }
  }

  // Stop by the responder: camera and microphone off at once, then the gateway told (so it
  // knows who ended it), then the connection to the media engine closed.
  async stop() {
    const id = this.streamId;
    this.stream?.getTracks().forEach((t) => t.stop());
    if (id) await this.call(this.kind.stop, { [this.kind.id]: id }, 10000).catch(() => {});
    if (this.streamId === id) this.close("stopped");
  }

  // The gateway ended it (`video.state` stopped/failed, `voice.state` ended, pushed to the
  // terminal's connection): closed at once if it is the one being published.
  ended(data) {
    if (!this.streamId || data[this.kind.id] !== this.streamId) return;
    this.close("stopped");
  }

  close(state = "stopped") {
    const had = this.streamId !== null;
    this.pc?.close();
    this.stream?.getTracks().forEach((t) => t.stop());
    if (this.preview) this.preview.srcObject = null;
    if (this.remote) this.remote.srcObject = null;
    this.pc = this.stream = this.streamId = null;
    if (had && state) this.onState(state);
  }
}
