// The reference field terminal: wiring of the page. It speaks only the public protocol
// (docs/protocol.md), so a native app can do the same: hello with the terminal's token,
// heartbeats and positions, instructions received and acknowledged, camera when pulled.

import { applyI18n, clock, lang, pickLang, say, setLang, t } from "./i18n.js";
import { Inbox } from "./inbox.js";
import { Link } from "./link.js";
import { Publisher, VIDEO, VOICE } from "./media.js";
import { Backlog, PositionWatch, batteryLevel, reportParams } from "./position.js";
import { Reporter, TRANSIENT, VoiceNote } from "./feedback.js";

const CLIENT = "field-terminal/1";
const TOKEN_KEY = "dgw.token";
const LANG_KEY = "dgw.lang";
const $ = (id) => document.getElementById(id);

const app = {
  config: null,
  link: null,
  inbox: null,
  token: null,
  remember: false, // the responder asked to keep the token on this device
  principal: null,
  fix: null, // {coords, timestamp, sent}
  backlog: new Backlog(), // fixes taken while the link was down
  reportTimer: null,
  watch: null,
  camera: null, // Publisher of camera + microphone (video.request)
  voice: null, // Publisher of the microphone into a phone call (voice.request)
  reporter: null,
  recording: null, // a VoiceNote being recorded
  note: null, // the recorded voice note: {blob, seconds}
};

// -- language -----------------------------------------------------------------------------
function initLang() {
  setLang(pickLang(localStorage.getItem(LANG_KEY), navigator.language));
  applyI18n(document);
  $("lang").addEventListener("click", () => {
    setLang(lang() === "en" ? "zh-CN" : "en");
    localStorage.setItem(LANG_KEY, lang());
    applyI18n(document);
    renderInstructions();
    renderPosition(); // its time, formatted for the language
  });
}

// -- sign in / out ------------------------------------------------------------------------
function showError(key, vars) {
  const el = $("signin-error");
  el.hidden = false;
  say(el, key, vars);
}

function errorKey(err) {
  if (err.reason === "rate-limited") return ["error.rate-limited", { s: Math.ceil(err.details.retry_after_s || 1) }];
  if (err.reason === "not-authenticated" || err.reason === "forbidden") return [`error.${err.reason}`, {}];
  return ["error.generic", { reason: err.reason }];
}

async function loadConfig() {
  const res = await fetch("config.json", { cache: "no-store", credentials: "omit" });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

async function signIn(token, remember) {
  app.link?.stop(); // a second press while the first attempt still retries
  app.link = null;
  $("signin-error").hidden = true;
  $("signin-button").disabled = true;
  say($("signin-button"), "signin.checking");
  try {
    app.config = await loadConfig();
  } catch (err) {
    signInFailed("error.config", { detail: err.message });
    return;
  }
  app.token = token;
  app.remember = remember; // kept once the gateway took it, never before
  app.link = new Link({
    url: app.config.control_url,
    token,
    client: CLIENT,
    heartbeatMs: app.config.heartbeat_interval_s * 1000,
    onState: linkState,
    onHello: hello,
    onNotify: notify,
    onEvent: event,
  });
  app.link.start();
}

function signInFailed(key, vars) {
  $("signin-button").disabled = false;
  say($("signin-button"), "signin.submit");
  showError(key, vars);
}

function signOut(keepError = false) {
  app.link?.stop();
  app.link = null;
  app.watch?.stop();
  app.camera?.close(null);
  app.voice?.close(null);
  app.reporter = null;
  app.recording?.stop();
  app.recording = app.note = null;
  app.backlog.take();
  clearInterval(app.reportTimer);
  localStorage.removeItem(TOKEN_KEY);
  app.token = null;
  $("work").hidden = true;
  $("signin").hidden = false;
  $("token").value = "";
  $("signin-button").disabled = false;
  say($("signin-button"), "signin.submit");
  if (!keepError) $("signin-error").hidden = true;
}

// -- the control channel ------------------------------------------------------------------
function linkState(state, detail) {
  const pill = $("link-state");
  pill.dataset.state = state;
  say(pill, `link.${state}`);
  if (state === "rejected") {
    const [key, vars] = errorKey(detail);
    signOut(true);
    showError(key, vars);
  } else if (state === "reconnecting") {
    say($("link-detail"), "link.retry_in", { s: Math.ceil(detail.delay / 1000) });
    if ($("work").hidden && app.link?.hellos === 0) {
      // Not signed in yet: say why (the link keeps trying by itself meanwhile).
      const [key, vars] = detail.error ? errorKey(detail.error) : ["error.unreachable", {}];
      signInFailed(key, vars);
    }
  } else if (state === "online" && detail.resumed) {
    say($("link-detail"), "link.resumed", { time: clock() });
  }
}

function hello(result, resumed) {
  if (result.role !== "terminal") {
    // A console's token: this page acts for one terminal only, never as a dispatcher.
    signOut(true);
    showError("error.forbidden");
    return;
  }
  if (!resumed) {
    if (app.remember) localStorage.setItem(TOKEN_KEY, app.token);
    app.principal = result.principal;
    app.inbox = new Inbox(localStorage, result.principal);
    $("principal").textContent = result.principal;
    $("signin").hidden = true;
    $("work").hidden = false;
    $("signin-error").hidden = true;
    startPosition();
    const call = (m, p, ms) => app.link.call(m, p, ms);
    app.camera = new Publisher(VIDEO, call, mediaState("video"), { preview: $("preview") });
    app.voice = new Publisher(VOICE, call, mediaState("voice"), { remote: $("voice-audio") });
    $("feedback-card").hidden = !app.config.uploads;
    app.reporter = new Reporter({ call: (m, p) => app.link.call(m, p), token: () => app.token,
      uploadsUrl: app.config.uploads?.url, onState: feedbackState });
    renderInstructions();
    restoreInstructions();
  }
  // Resume: positions taken offline and the newest go out at once, acknowledgements pressed
  // offline follow;
  // the gateway pushes again every instruction not yet confirmed.
  resumePosition();
  for (const id of app.inbox.unsentAcks()) acknowledge(id);
  if (resumed) app.reporter.flush();
}

function notify(method, params) {
  if (method === "terminal.instruction") instruction(params);
}

function event(ev) {
  if (ev.type === "video.request") app.camera?.publish(ev.data || {});
  if (ev.type === "voice.request") app.voice?.publish(ev.data || {});
  // The gateway ended a stream or a call (pushed to the terminal's own connection).
  const state = ev.data?.state;
  if (ev.type === "video.state" && (state === "stopped" || state === "failed")) app.camera?.ended(ev.data);
  if (ev.type === "voice.state" && state === "ended") app.voice?.ended(ev.data);
}

// -- instructions -------------------------------------------------------------------------
// At sign-in, the instructions not acknowledged yet (`terminal.instructions`): a reinstalled
// app or a new browser has an empty inbox, and what was delivered before is not pushed again.
async function restoreInstructions() {
  const inbox = app.inbox;
  let after = null;
  for (let pages = 0; pages < 10; pages += 1) {
    let reply;
    try {
      reply = await app.link.call("terminal.instructions", after ? { after } : {});
    } catch {
      return; // a lost link: pushes still bring what was never delivered
    }
    if (app.inbox !== inbox) return; // signed out meanwhile
    let added = false;
    for (const item of reply.instructions || []) added = inbox.add(item) || added;
    if (added) renderInstructions();
    after = reply.next_after;
    if (!after) return;
  }
}

function instruction(params) {
  const id = params.instruction_id;
  if (typeof id !== "string") return;
  // Confirm every push, repeats too: the first confirmation may have been lost.
  app.link.call("terminal.received", { instruction_id: id }).catch(() => {});
  if (app.inbox.add(params)) renderInstructions();
}

async function acknowledge(id) {
  app.inbox.setAck(id, "wanted");
  renderInstructions();
  try {
    await app.link.call("terminal.ack", { instruction_id: id });
    app.inbox.setAck(id, "done");
  } catch (err) {
    if (err.reason === "no-such-instruction" || err.reason === "forbidden") app.inbox.setAck(id, "done");
  }
  renderInstructions();
}

function renderInstructions() {
  if (!app.inbox) return;
  const list = $("instructions");
  const items = app.inbox.list();
  $("instructions-empty").hidden = items.length > 0;
  list.replaceChildren(...items.map(renderInstruction));
}

function renderInstruction(item) {
  const li = document.createElement("li");
  li.dataset.id = item.instruction_id;
  li.dataset.ack = item.ack;
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = item.text;
  const meta = document.createElement("p");
  meta.className = "muted";
  const when = item.created_at ? clock(new Date(item.created_at)) : "";
  meta.textContent = t("instructions.from", { who: item.created_by || "", time: when });
  li.append(text, meta);
  if (!item.require_ack) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = t("instructions.info");
    li.append(note);
  } else if (item.ack === "done") {
    const done = document.createElement("p");
    done.className = "acked";
    done.textContent = t("instructions.acked");
    li.append(done);
  } else {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ack";
    button.disabled = item.ack === "wanted";
    button.textContent = t(item.ack === "wanted" ? (app.link?.up ? "instructions.acking" : "instructions.ack_queued") : "instructions.ack");
    button.addEventListener("click", () => acknowledge(item.instruction_id));
    li.append(button);
  }
  return li;
}

// -- position -----------------------------------------------------------------------------
function startPosition() {
  app.watch = new PositionWatch(
    (coords, timestamp) => {
      const first = app.fix === null;
      app.fix = { coords, timestamp, sent: null };
      if (!app.link?.up && $("share").checked) {
        app.backlog.add({ ...reportParams(coords, timestamp), status: $("status").value });
        $("position").dataset.backlog = app.backlog.size;
      }
      $("position-error").hidden = true;
      renderPosition();
      if (first) sendPosition(true);
    },
    (code) => {
      $("position-error").hidden = false;
      say($("position-error"), `position.${code}`);
    },
  );
  if ($("share").checked) app.watch.start();
  clearInterval(app.reportTimer);
  app.reportTimer = setInterval(() => sendPosition(false), app.config.report_interval_s * 1000);
}

async function sendPosition(force) {
  const fix = app.fix;
  if (!fix || !$("share").checked || !app.link?.up) return;
  if (fix.sent !== null && !force) return; // nothing new; pings keep the heartbeat
  const params = { ...reportParams(fix.coords, fix.timestamp, await batteryLevel()), status: $("status").value };
  try {
    await app.link.call("terminal.report", params);
    fix.sent = new Date();
    renderPosition();
  } catch (err) {
    if (TRANSIENT.has(err.reason)) return;
    $("position-error").hidden = false;
    const loc = (err.details.errors || []).map((e) => `${[].concat(e.loc).join(".")}: ${e.msg}`).join("; ");
    say($("position-error"), "position.refused", { detail: loc || err.reason });
  }
}

// After a reconnect: the fixes taken offline, oldest first, then the newest if it was not among them.
async function resumePosition() {
  const items = app.backlog.take();
  for (let i = 0; i < items.length; i++) {
    try {
      await app.link.call("terminal.report", items[i]);
    } catch (err) {
      if (TRANSIENT.has(err.reason)) return app.backlog.putBack(items.slice(i)); // down again
      // refused (e.g. older than the gateway keeps): that one is dropped
    }
  }
  $("position").dataset.backlog = app.backlog.size;
  const fix = app.fix;
  if (fix && items.length && items.at(-1).time === new Date(fix.timestamp).toISOString()) {
    fix.sent = new Date();
    renderPosition();
  } else {
    await sendPosition(true);
  }
}

function renderPosition() {
  const el = $("position");
  if (!$("share").checked) return say(el, "position.paused");
  const fix = app.fix;
  if (!fix) return say(el, "position.none");
  const vars = { lat: fix.coords.latitude.toFixed(5), lon: fix.coords.longitude.toFixed(5),
    acc: Math.round(fix.coords.accuracy), time: fix.sent ? clock(fix.sent) : "" };
  say(el, fix.sent ? "position.fix" : "position.waiting", vars);
}

function shareChanged() {
  if ($("share").checked) app.watch?.start();
  else app.watch?.stop();
  renderPosition();
  sendPosition(true);
}

// -- feedback ----------------------------------------------------------------------------
async function sendFeedback() {
  if (app.recording) await toggleRecording(); // sending while recording: the note so far goes too
  const text = $("feedback-text").value.trim();
  const files = [$("feedback-photo").files[0], app.note?.blob].filter(Boolean);
  if (!text && !files.length) return say($("feedback-state"), "feedback.empty");
  // (a photo is scaled down before it is sent; a voice note is what it is)
  if (files.some((f) => !f.type.startsWith("image/") && f.size > app.config.uploads.max_bytes)) {
    return say($("feedback-state"), "feedback.failed", { detail: "too-large" });
  }
  if (app.reporter.submit(text, files)) $("feedback-send").disabled = true;
}

async function toggleRecording() {
  const button = $("feedback-record");
  if (!app.recording) {
    const note = new VoiceNote();
    try {
      await note.start();
    } catch (err) {
      return say($("feedback-state"), "feedback.failed", { detail: err.reason || err.name || String(err) });
    }
    app.recording = note;
    button.dataset.recording = "";
    return say(button, "feedback.stop_recording");
  }
  const note = app.recording;
  app.recording = null;
  delete button.dataset.recording;
  say(button, "feedback.record");
  app.note = await note.stop();
  say($("feedback-note-name"), "feedback.note_ready", { s: app.note.seconds });
}

function feedbackState(state, detail) {
  const el = $("feedback-state");
  el.dataset.state = state;
  if (state === "sending") return say(el, "feedback.sending");
  if (state === "waiting") return say(el, "error.offline");
  $("feedback-send").disabled = false;
  if (state === "sent") {
    $("feedback-form").reset();
    photoChosen();
    app.note = null;
    say($("feedback-note-name"), "feedback.no_note");
    return say(el, "feedback.sent", { time: clock() });
  }
  say(el, "feedback.failed", { detail: detail.reason });
}

function photoChosen() {
  const file = $("feedback-photo").files[0];
  const el = $("feedback-photo-name");
  if (file) {
    delete el.dataset.i18n; // a file name is not translated
    el.textContent = file.name;
  } else {
    say(el, "feedback.no_photo");
  }
}

// -- camera and voice --------------------------------------------------------------------------------
// The card of a Publisher ("video": #video-card, #video-state; "voice": #voice-card, ...).
function mediaState(prefix) {
  return (state, detail) => {
    $(`${prefix}-card`).hidden = state === "stopped";
    $(`${prefix}-state`).dataset.state = state;
    say($(`${prefix}-state`), `${prefix}.${state}`, { detail: detail || "" });
  };
}

// -- start --------------------------------------------------------------------------------
function init() {
  initLang();
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim(), $("remember").checked);
  });
  $("signout").addEventListener("click", () => {
    app.inbox?.clear();
    signOut();
  });
  $("share").addEventListener("change", shareChanged);
  $("status").addEventListener("change", () => sendPosition(true)); // dispatch sees it at once
  $("feedback-photo").addEventListener("change", photoChosen);
  $("feedback-record").addEventListener("click", toggleRecording);
  $("feedback-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendFeedback();
  });
  $("video-stop").addEventListener("click", () => app.camera?.stop());
  $("voice-stop").addEventListener("click", () => app.voice?.stop());
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved, true);
}

init();
