// Every string the page shows, in English and Chinese (zh-CN). Elements carry
// data-i18n="key" (text) or data-i18n-placeholder="key"; code calls t(key, vars).
// A test checks both tables have the same keys and every key used exists.

export const LANGS = ["en", "zh-CN"];

export const STRINGS = {
  "en": {
    "app.title": "Field terminal",
    "lang.switch": "中文",
    "link.offline": "Offline",
    "link.connecting": "Connecting…",
    "link.online": "Online",
    "link.reconnecting": "Reconnecting…",
    "link.rejected": "Signed out",
    "link.retry_in": "Connection lost; trying again in {s} s.",
    "link.resumed": "Connected again at {time}.",
    "signin.token": "Access token",
    "signin.remember": "Remember the token on this device",
    "signin.submit": "Sign in",
    "signin.checking": "Signing in…",
    "work.signed_in_as": "Signed in as",
    "work.sign_out": "Sign out",
    "error.not-authenticated": "This token was not accepted. Check it and try again.",
    "error.forbidden": "This token does not belong to a field terminal.",
    "error.rate-limited": "Too many attempts. Wait {s} s and try again.",
    "error.config": "The gateway's settings could not be loaded ({detail}).",
    "error.unreachable": "The gateway cannot be reached. Check the network.",
    "error.generic": "The gateway refused the request ({reason}).",
    "error.offline": "Not connected: it will be sent when the connection is back.",
    "position.title": "Position",
    "status.label": "My status",
    "status.available": "Available",
    "status.en-route": "On the way",
    "status.on-scene": "On scene",
    "status.busy": "Busy",
    "position.share": "Share my position",
    "position.none": "No position yet.",
    "position.paused": "Position sharing is off.",
    "position.fix": "{lat}, {lon} (±{acc} m), sent {time}",
    "position.waiting": "{lat}, {lon} (±{acc} m), not sent yet",
    "position.denied": "Location permission denied: allow it in the browser settings.",
    "position.unavailable": "No position available from this device.",
    "position.unsupported": "This browser cannot share its position.",
    "position.refused": "The gateway refused the position ({detail}).",
    "instructions.title": "Instructions",
    "instructions.empty": "No instructions yet.",
    "instructions.ack": "Acknowledge",
    "instructions.acked": "Acknowledged",
    "instructions.acking": "Acknowledging…",
    "instructions.ack_queued": "Will be acknowledged when connected",
    "instructions.info": "No acknowledgement needed",
    "instructions.from": "{who} at {time}",
    "feedback.title": "Report to dispatch",
    "feedback.text": "Message",
    "feedback.photo": "Photo",
    "feedback.choose": "Take or choose a photo",
    "feedback.no_photo": "No photo",
    "feedback.note": "Voice note",
    "feedback.record": "Record a voice note",
    "feedback.stop_recording": "Stop recording",
    "feedback.no_note": "No voice note",
    "feedback.note_ready": "Voice note, {s} s",
    "feedback.send": "Send",
    "feedback.sending": "Sending…",
    "feedback.sent": "Sent at {time}.",
    "feedback.empty": "Write a message, choose a photo or record a voice note first.",
    "feedback.failed": "Not sent ({detail}).",
    "video.title": "Camera requested by dispatch",
    "video.starting": "Starting camera and microphone…",
    "video.live": "Live: dispatch can see and hear you.",
    "video.stopped": "Camera stopped.",
    "video.failed": "Camera could not start ({detail}).",
    "video.stop": "Stop camera",
    "voice.title": "Call from dispatch",
    "voice.starting": "Connecting your microphone to the call…",
    "voice.live": "In the call: you are heard.",
    "voice.stopped": "Call ended.",
    "voice.failed": "The call could not be connected ({detail}).",
    "voice.stop": "Hang up",
  },
  "zh-CN": {
    "app.title": "现场终端",
    "lang.switch": "English",
    "link.offline": "离线",
    "link.connecting": "正在连接…",
    "link.online": "在线",
    "link.reconnecting": "正在重新连接…",
    "link.rejected": "已退出",
    "link.retry_in": "连接中断，{s} 秒后重试。",
    "link.resumed": "已于 {time} 重新连接。",
    "signin.token": "访问令牌",
    "signin.remember": "在本设备上记住令牌",
    "signin.submit": "登录",
    "signin.checking": "正在登录…",
    "work.signed_in_as": "当前用户",
    "work.sign_out": "退出登录",
    "error.not-authenticated": "令牌无效，请检查后重试。",
    "error.forbidden": "此令牌不属于现场终端。",
    "error.rate-limited": "尝试次数过多，请等待 {s} 秒后重试。",
    "error.config": "无法加载网关设置（{detail}）。",
    "error.unreachable": "无法连接网关，请检查网络。",
    "error.generic": "网关拒绝了请求（{reason}）。",
    "error.offline": "未连接：恢复连接后将自动发送。",
    "position.title": "位置",
    "status.label": "我的状态",
    "status.available": "待命",
    "status.en-route": "在途中",
    "status.on-scene": "已到达现场",
    "status.busy": "忙碌",
    "position.share": "共享我的位置",
    "position.none": "暂无位置。",
    "position.paused": "位置共享已关闭。",
    "position.fix": "{lat}，{lon}（±{acc} 米），发送于 {time}",
    "position.waiting": "{lat}，{lon}（±{acc} 米），尚未发送",
    "position.denied": "定位权限被拒绝：请在浏览器设置中允许。",
    "position.unavailable": "本设备无法获取位置。",
    "position.unsupported": "此浏览器无法共享位置。",
    "position.refused": "网关拒绝了该位置（{detail}）。",
    "instructions.title": "指令",
    "instructions.empty": "暂无指令。",
    "instructions.ack": "确认收到",
    "instructions.acked": "已确认",
    "instructions.acking": "正在确认…",
    "instructions.ack_queued": "连接恢复后将确认",
    "instructions.info": "无需确认",
    "instructions.from": "{who}，{time}",
    "feedback.title": "向调度报告",
    "feedback.text": "消息",
    "feedback.photo": "照片",
    "feedback.choose": "拍照或选择照片",
    "feedback.no_photo": "未选择照片",
    "feedback.note": "语音留言",
    "feedback.record": "录制语音留言",
    "feedback.stop_recording": "停止录音",
    "feedback.no_note": "无语音留言",
    "feedback.note_ready": "语音留言，{s} 秒",
    "feedback.send": "发送",
    "feedback.sending": "正在发送…",
    "feedback.sent": "已于 {time} 发送。",
    "feedback.empty": "请先填写消息、选择照片或录制语音留言。",
    "feedback.failed": "发送失败（{detail}）。",
    "video.title": "调度请求开启摄像头",
    "video.starting": "正在启动摄像头和麦克风…",
    "video.live": "直播中：调度可以看到并听到您。",
    "video.stopped": "摄像头已关闭。",
    "video.failed": "摄像头无法启动（{detail}）。",
    "video.stop": "关闭摄像头",
    "voice.title": "调度来电",
    "voice.starting": "正在将您的麦克风接入通话…",
    "voice.live": "通话中：对方可以听到您。",
    "voice.stopped": "通话已结束。",
    "voice.failed": "通话无法接通（{detail}）。",
    "voice.stop": "挂断",
  },
};

let current = "en";

export function pickLang(stored, navigatorLang) {
  if (LANGS.includes(stored)) return stored;
  return (navigatorLang || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export function setLang(lang) {
  current = LANGS.includes(lang) ? lang : "en";
  return current;
}

export function lang() {
  return current;
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

export function has(key) {
  return key in STRINGS.en;
}

export function applyI18n(root) {
  document.documentElement.lang = current;
  document.title = t("app.title");
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n, el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {});
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

// Shows `key` in `el` and remembers it, so a language switch re-translates dynamic text too.
export function say(el, key, vars = {}) {
  el.dataset.i18n = key;
  el.dataset.i18nVars = JSON.stringify(vars);
  el.textContent = t(key, vars);
}

export function clock(date = new Date()) {
  return date.toLocaleTimeString(current, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
