// A small SMSC for the SMPP provider tests, on the server side of the npm `smpp` library.
//
// argv[2] is a JSON config: {port, system_id, password, reject: {dest: status}, stat: {dest: "UNDELIV"},
// receipt_delay_ms}. Commands arrive as JSON lines on stdin ({"cmd": "mo", "from", "to", "text"} |
// {"cmd": "drop"}); every PDU seen and every action is one JSON line on stdout.
'use strict';
const smpp = require('smpp');
const readline = require('readline');

const cfg = JSON.parse(process.argv[2]);
const sessions = new Set();
let nextId = 1;

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

function receipt(session, pdu, id) {
  const stat = (cfg.stat || {})[pdu.destination_addr] || 'DELIVRD';
  const err = stat === 'DELIVRD' ? '000' : '001';
  const now = smppTime(new Date());
  const text = `id:${id} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${now} ` +
    `done date:${now} stat:${stat} err:${err} text:`;
  session.deliver_sm({
    source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 0x04,
    data_coding: 0, short_message: Buffer.from(text, 'ascii'),
  }, (resp) => emit({ event: 'receipt_resp', id, stat, status: resp.command_status }));
  emit({ event: 'receipt', id, stat });
}

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.on('close', () => { sessions.delete(session); emit({ event: 'close' }); });
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
    session.send(pdu.response({ message_id: id }));
    emit({ ...rec, status: 0, message_id: id });
    if (pdu.registered_delivery & 0x01) {
      setTimeout(() => receipt(session, pdu, id), cfg.receipt_delay_ms || 50);
    }
  });
});

server.on('error', (e) => { emit({ event: 'server_error', error: String(e) }); process.exit(2); });
server.listen(cfg.port, '127.0.0.1', () => emit({ event: 'listening', port: cfg.port, pid: process.pid }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.cmd === 'mo') {
    for (const session of sessions) {
      if (!session.bound) continue;
      session.deliver_sm({
        source_addr: cmd.from, destination_addr: cmd.to, esm_class: 0x00, data_coding: 0x08,
        short_message: Buffer.from(cmd.text, 'utf16le').swap16(),
      }, (resp) => emit({ event: 'mo_resp', status: resp.command_status }));
      emit({ event: 'mo', from: cmd.from, to: cmd.to });
    }
  } else if (cmd.cmd === 'drop') {
    for (const session of sessions) session.destroy();
    emit({ event: 'dropped' });
  }
});
