// Camera and microphone when dispatch pulls them (docs/protocol.md, "Event data (video)"):
// a `video.request` event {stream_id, audio, video, ice_servers} -> getUserMedia -> an offer
// with every ICE candidate gathered (no trickle) -> `video.publish {stream_id, sdp}` -> the
// answer. Media goes to the media engine; only SDP passes over the control channel.

export const GATHER_TIMEOUT_MS = 10000;

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
  // onState(state, detail): "starting" | "live" | "stopped" | "failed"
  constructor(call, onState, preview) {
    this.call = call;
    this.onState = onState;
    this.preview = preview;
    this.stream = null;
    this.pc = null;
    this.streamId = null;
  }

  async publish(request) {
    if (this.streamId === request.stream_id) return; // the same pull pushed again
    this.close();
    this.streamId = request.stream_id;
    this.onState("starting");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: request.audio !== false,
        video: request.video !== false ? { width: { ideal: 640 }, height: { ideal: 480 } } : false,
      });
      this.preview.srcObject = this.stream;
      const pc = (this.pc = new RTCPeerConnection({ iceServers: request.ice_servers || [] }));
      for (const track of this.stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [this.stream] });
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === "connected") this.onState("live");
        if (pc.connectionState === "failed" || pc.connectionState === "closed") this.close("stopped");
      });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const answer = await this.call("video.publish", { stream_id: request.stream_id, sdp: pc.localDescription.sdp });
      if (pc !== this.pc) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      this.close(null);
      this.onState("failed", err.reason || err.name || String(err));
    }
  }

  // Stop by the responder: tell the gateway, then close locally.
  async stop() {
    const id = this.streamId;
    this.close("stopped");
    if (id) await this.call("video.stop", { stream_id: id }).catch(() => {});
  }

  close(state = "stopped") {
    const had = this.streamId !== null;
    this.pc?.close();
    this.stream?.getTracks().forEach((t) => t.stop());
    this.preview.srcObject = null;
    this.pc = this.stream = this.streamId = null;
    if (had && state) this.onState(state);
  }
}
