// The benchmark's SMSC: the npm `smpp` package in server mode, an SMPP
// implementation independent of moms and Kannel. It accepts any bind,
// answers every submit_sm at once with a hex message id and, when the
// submit asks for one, sends a delivery receipt (DELIVRD) right after.
// Unlike tests/interop/smsc.js it prints nothing per message: at thousands
// of messages a second the printing would be what is measured.
//
// Usage: NODE_PATH=tests/interop/node_modules node bench/smsc.js [port]
// stdout: "LISTENING <port>"; on SIGUSR2 or stdin "COUNT":
// "COUNT <submits> <receipts sent> <unix ms of the last submit> <… of the last receipt>".
'use strict';
const smpp = require('smpp');
const readline = require('readline');

let nextId = 0x10000;
let submits = 0;
let receipts = 0;
let lastSubmit = 0;
let lastReceipt = 0;

function stamp(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(date.getUTCFullYear() % 100)}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}`;
}

const server = smpp.createServer((session) => {
  for (const mode of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(mode, (pdu) => session.send(pdu.response({ system_id: 'bench-smsc' })));
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('error', () => {});
  session.on('submit_sm', (pdu) => {
    const id = (nextId++).toString(16).toUpperCase();
    submits++;
    lastSubmit = Date.now();
    session.send(pdu.response({ message_id: id }));
    if ((pdu.registered_delivery & 0x03) === 0) return;
    const now = stamp(new Date());
    receipts++;
    lastReceipt = Date.now();
    session.deliver_sm({
      source_addr: pdu.destination_addr,
      destination_addr: pdu.source_addr,
      esm_class: 0x04,
      short_message: `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`,
      receipted_message_id: id,
      message_state: 2,
    });
  });
  session.on('deliver_sm_resp', () => {});
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});

const count = () => console.log(`COUNT ${submits} ${receipts} ${lastSubmit} ${lastReceipt}`);
process.on('SIGUSR2', count);
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'COUNT') count();
});
