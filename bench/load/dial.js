// Opens `total` WebSockets with `concurrency` handshakes in flight over raw TCP (request bytes out, wait for
// the 101), rotating 127.0.0.x source addresses, and keeps them open: a dialer much cheaper than the server,
// so the server is what gets measured. Closes everything on 'close' from the parent.
'use strict';
const net = require('node:net');
const [target, total, concurrency] = [new URL(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const request = Buffer.from(
  `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
);
const sockets = [];
let started = 0;
let open = 0;
let failed = 0;
let statuses = {};

function dialOne(done) {
  if (started >= total) return;
  const i = started++;
  const socket = net.connect({ host: target.hostname, port: Number(target.port), localAddress: `127.0.0.${2 + (i % 8)}` });
  let head = '';
  let settled = false;
  const settle = (ok, status) => {
    if (settled) return;
    settled = true;
    if (ok) {
      open++;
      sockets.push(socket);
    } else {
      failed++;
      statuses[status] = (statuses[status] || 0) + 1;
      socket.destroy();
    }
    if (open + failed === total) done();
    else dialOne(done);
  };
  socket.on('connect', () => socket.write(request));
  socket.on('data', (chunk) => {
    if (settled) return; // frames after the handshake are ignored
    head += chunk.toString('latin1');
    if (head.includes('\r\n\r\n')) settle(head.startsWith('HTTP/1.1 101'), head.slice(9, 12));
  });
  socket.on('error', () => settle(false, 'error'));
}

process.on('message', async (msg) => {
  if (msg.type === 'dial') {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
      for (let i = 0; i < Math.min(concurrency, total); i++) dialOne(resolve);
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.send({ type: 'dialed', open, failed, statuses, seconds });
  }
  if (msg.type === 'close') {
    for (const socket of sockets) socket.destroy();
    process.send({ type: 'closed' });
    setTimeout(() => process.exit(0), 50);
  }
});
process.send({ type: 'ready' });
