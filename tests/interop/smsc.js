// An SMSC built on the npm `smpp` package (server mode): an independent
// SMPP implementation moms is tested against. It accepts any bind, answers
// every submit_sm with a hex message id, sends a delivery receipt for every
// message that asks for one, and injects inbound messages on command.
//
// Usage: node smsc.js [port]   (0 or nothing: any free port)
// stdout: "LISTENING <port>", then "SUBMIT <id> <destination> <esm_class> <text>"
//         for every submit_sm and "BOUND <mode>" for every bind.
// stdin:  "MO <from> <to> <text…>" sends a deliver_sm to every receiving session.
'use strict';
const smpp = require('smpp');
const readline = require('readline');

let nextId = 0x10000;
const receivers = new Set();

function stamp(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(date.getUTCFullYear() % 100)}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}`;
}

function text(pdu) {
  const sm = pdu.short_message;
  if (sm && typeof sm === 'object' && 'message' in sm) return String(sm.message);
  return sm === undefined ? '' : String(sm);
}

const server = smpp.createServer((session) => {
  for (const mode of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(mode, (pdu) => {
      session.send(pdu.response({ system_id: 'interop-smsc' }));
      if (mode !== 'bind_transmitter') receivers.add(session);
      console.log(`BOUND ${mode}`);
    });
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    receivers.delete(session);
    session.close();
  });
  session.on('close', () => receivers.delete(session));
  session.on('error', () => receivers.delete(session));
  session.on('submit_sm', (pdu) => {
    const id = (nextId++).toString(16).toUpperCase();
    session.send(pdu.response({ message_id: id }));
    const body = text(pdu).replace(/\s+/g, ' ');
    console.log(`SUBMIT ${id} ${pdu.destination_addr} ${pdu.esm_class} ${body}`);
    if ((pdu.registered_delivery & 0x03) === 0) return;
    setTimeout(() => {
      const now = stamp(new Date());
      session.deliver_sm({
        source_addr: pdu.destination_addr,
        destination_addr: pdu.source_addr,
        esm_class: 0x04,
        short_message: `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`,
        receipted_message_id: id,
        message_state: 2,
      });
    }, 10);
  });
  session.on('deliver_sm_resp', () => {});
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, from, to, ...words] = line.trim().split(' ');
  if (command !== 'MO') return;
  for (const session of receivers) {
    session.deliver_sm({ source_addr: from, destination_addr: to, esm_class: 0, short_message: words.join(' ') });
  }
  console.log(`MO-SENT ${from} ${to}`);
});
