// Text and photos from the field into the incident (docs/protocol.md, "Uploads (HTTP)" and
// `terminal.feedback`): the photo goes to POST /v1/uploads on this origin with the terminal's
// token, then `terminal.feedback {text?, uploads: [sha256]}` names it. One report at a time; a
// report that could not go out for want of a connection waits and is sent again (same
// idempotency key, the photo not uploaded twice) when the link is back. No DOM here.

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

export class Reporter {
  // call(method, params) -> Promise (the control link); token() -> the terminal's token
  constructor({ call, token, uploadsUrl, onState }) {
    Object.assign(this, { call, token, uploadsUrl, onState });
    this.pending = null; // {text, file, uploadId, key}
  }

  // A new report; false when one is still on its way.
  submit(text, file) {
    if (this.pending) return false;
    this.pending = { text: text || null, file: file || null, uploadId: null, key: newKey() };
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
      if (p.file && !p.uploadId) p.uploadId = await upload(this.uploadsUrl, this.token(), p.file);
      const params = { idempotency_key: p.key };
      if (p.text) params.text = p.text;
      if (p.uploadId) params.uploads = [p.uploadId];
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
