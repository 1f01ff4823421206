// Text, photos and voice notes from the field into the incident (docs/protocol.md, "Uploads
// (HTTP)" and `terminal.feedback`): each file goes to POST /v1/uploads on this origin with the
// terminal's token, then `terminal.feedback {text?, uploads: [sha256, ...]}` names them. One
// report at a time; a report that could not go out for want of a connection waits and is sent
// again (same idempotency key, no file uploaded twice) when the link is back. No DOM here.

export const TRANSIENT = new Set(["offline", "disconnected", "timeout", "network", "busy", "rate-limited"]);

export class FeedbackError extends Error {
  constructor(reason, detail = "") {
    super(detail || reason);
    this.reason = reason;
    this.detail = detail;
  }
}

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "fb-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function upload(url, token, file) {
  let res;
  try {
    res = await fetch(url, {
      method: "POST", body: file, credentials: "omit", cache: "no-store",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": file.type || "application/octet-stream" },
    });
  } catch (err) {
    throw new FeedbackError("network", String(err));
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new FeedbackError(body.error?.reason || `http-${res.status}`, body.error?.message || "");
  return body.upload_id;
}

// A phone's photo (often 3-10 MB) is scaled to at most MAX_PHOTO_SIDE px and re-encoded as
// JPEG before it crosses a field network; a small one goes as it is. Re-encoding also drops
// the file's metadata (EXIF, with its own GPS tag; the position goes by terminal.report).
export const MAX_PHOTO_SIDE = 2048;
export const SMALL_PHOTO_BYTES = 1024 * 1024;

export async function shrinkPhoto(file) {
  if (!file.type.startsWith("image/")) return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return file; // not decodable here: the gateway judges it
  }
  const scale = Math.min(1, MAX_PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && file.size <= SMALL_PHOTO_BYTES) {
    bitmap.close();
    return file;
  }
  const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.85 });
  return blob.size < file.size ? blob : file;
}

export class Reporter {
  // call(method, params) -> Promise (the control link); token() -> the terminal's token
  constructor({ call, token, uploadsUrl, onState }) {
    Object.assign(this, { call, token, uploadsUrl, onState });
    this.pending = null; // {text, files, uploadIds, key}
  }

  // A new report (files: Blobs with a type); false when one is still on its way.
  submit(text, files = []) {
    if (this.pending) return false;
    this.pending = { text: text || null, files, uploadIds: [], key: newKey() };
    this.flush();
    return true;
  }

  // Sends the pending report (again); called on submit and after each reconnect.
  async flush() {
    const p = this.pending;
    if (!p || p.busy) return;
    p.busy = true;
    this.onState("sending");
    try {
      if (!p.shrunk) {
        p.files = await Promise.all(p.files.map(shrinkPhoto));
        p.shrunk = true;
      }
      while (p.uploadIds.length < p.files.length) {
        p.uploadIds.push(await upload(this.uploadsUrl, this.token(), p.files[p.uploadIds.length]));
      }
      const params = { idempotency_key: p.key };
      if (p.text) params.text = p.text;
      if (p.uploadIds.length) params.uploads = [...new Set(p.uploadIds)];
      const result = await this.call("terminal.feedback", params);
      this.pending = null;
      this.onState("sent", result);
    } catch (err) {
      if (TRANSIENT.has(err.reason)) {
        this.onState("waiting", err);
      } else {
        this.pending = null; // refused for good: the responder sees why and may send again
        this.onState("failed", err);
      }
    } finally {
      p.busy = false;
    }
  }
}

// A short voice note from the microphone (MediaRecorder: Opus in WebM, or in Ogg where WebM is
// not offered), stopped by the responder or after MAX_NOTE_MS.
export const MAX_NOTE_MS = 60000;
const NOTE_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus"];

export class VoiceNote {
  async start() {
    const type = NOTE_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    if (!type) throw new FeedbackError("unsupported", "MediaRecorder");
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    this.chunks = [];
    this.started = performance.now();
    this.recorder = new MediaRecorder(this.stream, { mimeType: type });
    this.recorder.addEventListener("dataavailable", (e) => e.data.size && this.chunks.push(e.data));
    this.done = new Promise((resolve) => this.recorder.addEventListener("stop", () => {
      this.stream.getTracks().forEach((t) => t.stop());
      resolve({ blob: new Blob(this.chunks, { type: type.split(";")[0] }),
                seconds: Math.round((performance.now() - this.started) / 1000) });
    }));
    this.recorder.start();
    this.limit = setTimeout(() => this.stop(), MAX_NOTE_MS);
  }

  // -> {blob, seconds}
  stop() {
    clearTimeout(this.limit);
    if (this.recorder?.state === "recording") this.recorder.stop();
    return this.done;
  }
}
