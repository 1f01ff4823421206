// A small SMSC for the SMPP provider tests, on the server side of the npm `smpp` library.
//
// argv[2] is a JSON config: {port, system_id, password, reject: {dest: status}, stat: {dest: "UNDELIV"},
// receipt_delay_ms, silent: [dest] (no submit_sm_resp, the receipt still comes), no_receipt: [dest],
// retry_ms}. Commands arrive as JSON lines on stdin ({"cmd": "mo", "from", "to", "text"} |
// {"cmd": "drop"}); every PDU seen and every action is one JSON line on stdout.
//
// Like an SMSC, every deliver_sm (receipt or MO) stays pending until a deliver_sm_resp with
// ESME_ROK: an error status (ESME_RTHROTTLED...) is retried after `retry_ms`, and one that got no
// answer before its session ended is delivered again to the next bound session.
'use strict';
const smpp = require('smpp');
const readline = require('readline');

const cfg = JSON.parse(process.argv[2]);
const sessions = new Set();
let nextId = 1;
let nextDelivery = 1;
const pending = new Map(); // delivery id -> {kind, fields, id, tries, session (in flight on) | null}

// Keep the raw short_message bytes: the library decodes them (and strips the UDH) in _filter.
const origFilter = smpp.PDU.prototype._filter;
smpp.PDU.prototype._filter = function (func) {
  if (func === 'decode' && Buffer.isBuffer(this.short_message)) {
    this.raw_short_message = Buffer.from(this.short_message);
  }
  return origFilter.call(this, func);
};

function emit(event) { process.stdout.write(JSON.stringify(event) + '\n'); }

function hex(b) { return Buffer.isBuffer(b) ? b.toString('hex') : null; }

function smppTime(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function bound() {
  for (const session of sessions) if (session.bound) return session;
  return null;
}

// Send (or send again) one pending deliver_sm on a bound session, if there is one.
function attempt(key) {
  const d = pending.get(key);
  if (!d || d.session) return;
  const session = bound();
  if (!session) return; // delivered when a session binds
  d.session = session;
  d.tries += 1;
  session.deliver_sm({ ...d.fields }, (resp) => {
    d.session = null;
    const status = resp.command_status;
    emit({ event: d.kind + '_resp', id: d.id, status, tries: d.tries, delivery: key });
    if (status === 0) {
      pending.delete(key);
    } else {
      setTimeout(() => attempt(key), cfg.retry_ms || 100);
    }
  });
  if (d.tries > 1) emit({ event: 'redeliver', kind: d.kind, id: d.id, tries: d.tries, delivery: key });
}

function deliver(kind, fields, id) {
  const key = nextDelivery++;
  pending.set(key, { kind, fields, id, tries: 0, session: null });
  attempt(key);
  return key;
}

function resendPending() {
  for (const [key, d] of pending) {
    if (d.session && !sessions.has(d.session)) d.session = null; // its session is gone: no answer
    attempt(key);
  }
}

function receipt(pdu, id) {
  const stat = (cfg.stat || {})[pdu.destination_addr] || 'DELIVRD';
  const err = stat === 'DELIVRD' ? '000' : '001';
  const now = smppTime(new Date());
  const text = `id:${id} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${now} ` +
    `done date:${now} stat:${stat} err:${err} text:`;
  deliver('receipt', {
    source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 0x04,
    data_coding: 0, short_message: Buffer.from(text, 'ascii'),
  }, id);
  emit({ event: 'receipt', id, stat });
}

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.on('close', () => { sessions.delete(session); emit({ event: 'close' }); resendPending(); });
  session.on('error', (e) => emit({ event: 'session_error', error: String(e) }));
  session.on('bind_transceiver', (pdu) => {
    const ok = pdu.system_id === cfg.system_id && pdu.password === cfg.password;
    emit({ event: 'bind_transceiver', system_id: pdu.system_id, system_type: pdu.system_type, ok });
    if (!ok) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVPASWD }));
      session.close();
      return;
    }
    session.bound = true;
    session.send(pdu.response({ system_id: 'SIMSMSC' }));
    resendPending(); // what the last session left unacknowledged

  });
  session.on('enquire_link', (pdu) => {
    emit({ event: 'enquire_link', sequence_number: pdu.sequence_number });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const sm = pdu.short_message || {};
    const rec = {
      event: 'submit_sm', source_addr: pdu.source_addr, destination_addr: pdu.destination_addr,
      esm_class: pdu.esm_class, data_coding: pdu.data_coding, registered_delivery: pdu.registered_delivery,
      short_message_hex: hex(pdu.raw_short_message), udh_hex: sm.udh ? sm.udh.map(hex) : [],
      sar_msg_ref_num: pdu.sar_msg_ref_num, sar_total_segments: pdu.sar_total_segments,
      sar_segment_seqnum: pdu.sar_segment_seqnum,
    };
    const status = (cfg.reject || {})[pdu.destination_addr];
    if (!session.bound) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      emit({ ...rec, status: smpp.ESME_RINVBNDSTS });
      return;
    }
    if (status) {
      session.send(pdu.response({ command_status: status }));
      emit({ ...rec, status });
      return;
    }
    const id = `sim${process.pid}-${nextId++}`;
    const silent = (cfg.silent || []).includes(pdu.destination_addr);
    if (!silent) session.send(pdu.response({ message_id: id }));
    emit({ ...rec, status: 0, message_id: id, silent, t: Number(process.hrtime.bigint()) / 1e9 });
    if ((pdu.registered_delivery & 0x01) && !(cfg.no_receipt || []).includes(pdu.destination_addr)) {
      setTimeout(() => receipt(pdu, id), cfg.receipt_delay_ms || 50);
    }
  });
});

server.on('error', (e) => { emit({ event: 'server_error', error: String(e) }); process.exit(2); });
server.listen(cfg.port, '127.0.0.1', () => emit({ event: 'listening', port: cfg.port, pid: process.pid }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.cmd === 'mo') {
    // UCS-2 (data_coding 8) unless coding is "latin1" (3); `parts`: a concatenated message, one
    // deliver_sm per part with an 8-bit reference UDH (05 00 03 ref total seq) and UDHI set.
    const coding = cmd.coding === 'latin1' ? 0x03 : 0x08;
    const octets = (t) => (coding === 0x03 ? Buffer.from(t, 'latin1') : Buffer.from(t, 'utf16le').swap16());
    const parts = cmd.parts || [cmd.text];
    parts.forEach((text, i) => {
      const udh = cmd.parts ? Buffer.from([5, 0, 3, cmd.ref || 1, parts.length, i + 1]) : Buffer.alloc(0);
      const key = deliver('mo', {
        source_addr: cmd.from, destination_addr: cmd.to, esm_class: cmd.parts ? 0x40 : 0x00, data_coding: coding,
        short_message: Buffer.concat([udh, octets(text)]),
      }, text);
      emit({ event: 'mo', from: cmd.from, to: cmd.to, delivery: key });
    });
  } else if (cmd.cmd === 'drop') {
    for (const session of sessions) session.destroy();
    emit({ event: 'dropped' });
  }
});
