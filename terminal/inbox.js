// Instructions on this device: each instruction_id shown once (the gateway delivers at least
// once: on every hello and again until `terminal.received` reaches it), in the order given,
// with its acknowledgement state. Kept in the page's storage per terminal, so ids already seen
// stay seen across a reload (docs/protocol.md, "Instructions (terminal side)"). No DOM here.

export const KEEP = 200; // the newest instructions kept; older ones are forgotten

export class Inbox {
  constructor(storage, terminalId) {
    this.storage = storage;
    this.key = `dgw.inbox.${terminalId}`;
    this.items = [];
    try {
      const saved = JSON.parse(storage?.getItem(this.key) || "[]");
      if (Array.isArray(saved)) this.items = saved.filter((i) => i && typeof i.instruction_id === "string");
    } catch {
      this.items = [];
    }
    this.arrivals = this.items.reduce((n, i) => Math.max(n, i.arrival || 0), 0);
  }

  // Adds a pushed instruction; false when that id was seen before (a redelivery).
  add(params) {
    if (typeof params?.instruction_id !== "string" || this.get(params.instruction_id)) return false;
    this.items.push({
      instruction_id: params.instruction_id,
      text: String(params.text ?? ""),
      session_id: params.session_id ?? null,
      require_ack: params.require_ack !== false,
      created_at: params.created_at ?? null,
      created_by: params.created_by ?? null,
      arrival: ++this.arrivals,
      ack: "none", // none -> wanted (pressed, not confirmed yet) -> done
    });
    this.items = this.list().slice(-KEEP);
    this._save();
    return true;
  }

  get(id) {
    return this.items.find((i) => i.instruction_id === id);
  }

  // Oldest first: by the time the dispatcher gave it, then by arrival.
  list() {
    return [...this.items].sort((a, b) => {
      const ta = a.created_at || "", tb = b.created_at || "";
      if (ta !== tb) return ta < tb ? -1 : 1;
      return a.arrival - b.arrival;
    });
  }

  setAck(id, state) {
    const item = this.get(id);
    if (!item || item.ack === "done") return;
    item.ack = state;
    this._save();
  }

  // Acknowledgements pressed but not confirmed by the gateway: sent again after a reconnect.
  unsentAcks() {
    return this.list().filter((i) => i.ack === "wanted").map((i) => i.instruction_id);
  }

  clear() {
    this.items = [];
    this.storage?.removeItem(this.key);
  }

  _save() {
    try {
      this.storage?.setItem(this.key, JSON.stringify(this.items));
    } catch {
      // storage full or disabled: the list still works for this page's life
    }
  }
}
