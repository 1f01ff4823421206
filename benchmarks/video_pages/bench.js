// Video benchmark peers (benchmarks/video.py), loaded after tests/video/pages/peer.html and
// control_peer.js. A publisher draws its wall-clock time into every frame (24 black/white
// blocks, ms modulo 2^24) on a 640x480 canvas with some motion, plus the fake microphone; a
// console watches several streams, one RTCPeerConnection each, and reads the time back from
// the decoded frames: capture-to-display delay, all pages sharing one clock.
const BLOCK = 53, BITS = 24, MOD = 1 << BITS;

function stampCanvas(fps) {
  const c = document.createElement("canvas");
  c.width = 640; c.height = 480;
  const g = c.getContext("2d");
  let x = 0;
  setInterval(() => {
    const t = Date.now() % MOD;
    g.fillStyle = "#335"; g.fillRect(0, 0, 640, 480);
    g.fillStyle = "#c84"; g.fillRect(x, 220, 160, 160); x = (x + 9) % 480;
    for (let i = 0; i < BITS; i++) {
      g.fillStyle = (t >> i) & 1 ? "#fff" : "#000";
      g.fillRect((i % 12) * BLOCK, Math.floor(i / 12) * BLOCK, BLOCK, BLOCK);
    }
  }, 1000 / fps);
  return c.captureStream(fps);
}

function benchPublishWhenAsked(fps) {
  window.published = null;
  window.onVideoRequest = async req => {
    try {
      const pcp = new RTCPeerConnection({iceServers: []});
      const mic = await navigator.mediaDevices.getUserMedia({audio: true});
      const cam = stampCanvas(fps);
      const both = new MediaStream([...cam.getVideoTracks(), ...mic.getAudioTracks()]);
      for (const t of both.getTracks()) pcp.addTrack(t, both);
      await pcp.setLocalDescription(await pcp.createOffer());
      await waitGathered(pcp);
      const res = await rpc("video.publish", {stream_id: req.stream_id, sdp: pcp.localDescription.sdp});
      await pcp.setRemoteDescription({type: "answer", sdp: res.sdp});
      window.benchPc = pcp;
      window.published = {stream_id: req.stream_id};
    } catch (e) { window.published = {error: String(e)}; }
  };
}

const views = [];
const delays = [];

function readStamp(g) {
  const row = g.getImageData(0, 0, 12 * BLOCK, 2 * BLOCK).data;
  let t = 0;
  for (let i = 0; i < BITS; i++) {
    const px = (i % 12) * BLOCK + (BLOCK >> 1), py = Math.floor(i / 12) * BLOCK + (BLOCK >> 1);
    const o = (py * 12 * BLOCK + px) * 4;
    if (row[o] + row[o + 1] + row[o + 2] > 3 * 128) t |= 1 << i;
  }
  return t;
}

async function benchWatch(streamIds) {
  for (const sid of streamIds) {
    const res = await rpc("video.watch", {stream_id: sid});
    const pcv = new RTCPeerConnection({iceServers: []});
    const video = document.createElement("video");
    video.autoplay = true; video.muted = true; video.playsInline = true;
    document.body.appendChild(video);
    const c = document.createElement("canvas");
    c.width = 640; c.height = 480;
    const g = c.getContext("2d", {willReadFrequently: true});
    let n = 0;
    const onFrame = () => {
      if (++n % 5 === 0 && video.videoWidth === 640) {
        g.drawImage(video, 0, 0);
        const d = (Date.now() % MOD - readStamp(g) + MOD) % MOD;
        if (d < 10000) delays.push(d);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    pcv.ontrack = ev => { if (ev.track.kind === "video") video.srcObject = new MediaStream([ev.track]); };
    await pcv.setRemoteDescription({type: "offer", sdp: res.sdp});
    await pcv.setLocalDescription(await pcv.createAnswer());
    await waitGathered(pcv);
    await rpc("video.answer", {watch_id: res.watch_id, sdp: pcv.localDescription.sdp});
    views.push({sid, pc: pcv});
  }
}

async function benchStats() {
  const out = [];
  for (const v of views) {
    let frames = 0;
    (await v.pc.getStats()).forEach(s => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
    });
    out.push(frames);
  }
  return {frames: out, delays: delays.splice(0)};
}
