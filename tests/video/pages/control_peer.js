// A WebRTC peer that signals only through the gateway's control channel (JSON-RPC over
// WebSocket), as a field terminal or a console would: it never talks to Janus. Loaded after
// peer.html's helpers (publishOffer, acceptAnswer, answerOffer, inboundStats).
let ws = null, nextId = 1;
const waiting = new Map();
const events = [];

function rpc(method, params) {
  const id = nextId++;
  ws.send(JSON.stringify({jsonrpc: "2.0", id, method, params: params || {}}));
  return new Promise((resolve, reject) => waiting.set(id, {resolve, reject}));
}

function connect(url, token) {
  return new Promise((resolve, reject) => {
    ws = new WebSocket(url);
    ws.onerror = () => reject(new Error("websocket error"));
    ws.onmessage = msg => {
      const m = JSON.parse(msg.data);
      if (m.id !== undefined && waiting.has(m.id)) {
        const w = waiting.get(m.id);
        waiting.delete(m.id);
        if (m.error) w.reject(new Error(m.error.data.reason + ": " + m.error.message));
        else w.resolve(m.result);
      } else if (m.method === "event") {
        events.push(m.params);
        if (m.params.type === "video.request" && window.onVideoRequest) window.onVideoRequest(m.params.data);
        if (m.params.type === "voice.request" && window.onVoiceRequest) window.onVoiceRequest(m.params.data);
      }
    };
    ws.onopen = () => rpc("hello", {token, client: "test-peer/1"}).then(resolve, reject);
  });
}

// Terminal: publish when the gateway asks (video.request), through video.publish.
function publishWhenAsked() {
  window.published = null;
  window.onVideoRequest = async req => {
    try {
      const offer = await publishOffer();
      const res = await rpc("video.publish", {stream_id: req.stream_id, sdp: offer});
      await acceptAnswer(res.sdp);
      window.published = {stream_id: req.stream_id};
    } catch (e) { window.published = {error: String(e)}; }
  };
}

// Console: watch a stream (Janus's offer comes back in the result), answer through video.answer.
async function watchStream(streamId) {
  const res = await rpc("video.watch", {stream_id: streamId});
  const answer = await answerOffer(res.sdp);
  return await rpc("video.answer", {watch_id: res.watch_id, sdp: answer});
}

// Terminal: its microphone into a SIP call when the gateway asks (voice.request), via voice.publish.
function voiceWhenAsked() {
  window.voiced = null;
  window.onVoiceRequest = async req => {
    try {
      const offer = await publishOffer({audio: true, video: false});
      const res = await rpc("voice.publish", {bridge_id: req.bridge_id, sdp: offer});
      await acceptAnswer(res.sdp);
      window.voiced = {bridge_id: req.bridge_id};
    } catch (e) { window.voiced = {error: String(e)}; }
  };
}
