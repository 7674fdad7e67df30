// Opens `total` WebSockets and never reads from them (the sockets are paused right after the 101): the
// server's sends pile up in the kernel and then in the server, as with clients on a dead mobile link.
'use strict';
const net = require('node:net');
const { upgradeRequest, JOIN_NAMESPACE } = require('./handshake');
const [target, total, mode] = [new URL(process.argv[2]), Number(process.argv[3]), process.argv[4] || 'ws'];
const request = upgradeRequest(target);
const sockets = [];
let open = 0;
let closedByServer = 0;

process.on('message', async (msg) => {
  if (msg.type === 'dial') {
    await Promise.all(Array.from({ length: total }, () => new Promise((resolve) => {
      const socket = net.connect({ host: target.hostname, port: Number(target.port), localAddress: '127.0.0.99' });
      let head = '';
      socket.on('connect', () => socket.write(request));
      const onData = (chunk) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        socket.off('data', onData);
        if (mode === 'socketio') socket.write(JOIN_NAMESPACE);
        open++;
        sockets.push(socket);
        socket.pause(); // from now on nothing is read
        resolve();
      };
      socket.on('data', onData);
      socket.on('close', () => closedByServer++);
      socket.on('error', () => resolve());
    })));
    process.send({ type: 'dialed', open });
  }
  if (msg.type === 'reset') {
    // Between rounds: drop this round's stalled sockets (RST, as below) so the next round starts fresh ones.
    for (const socket of sockets.splice(0)) socket.resetAndDestroy();
    open = 0;
    process.send({ type: 'reset' });
  }
  if (msg.type === 'status') process.send({ type: 'status', open, closedByServer });
  if (msg.type === 'close') {
    // RST, not FIN: thousands of sockets per round would otherwise sit in TIME_WAIT on the load side, and the
    // kernel's port search for the next round's connects (bound to 127.0.0.x) slows the dial down.
    for (const socket of sockets) socket.resetAndDestroy();
    process.send({ type: 'closed' });
    setTimeout(() => process.exit(0), 50);
  }
});
process.send({ type: 'ready' });
