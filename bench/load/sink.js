// The fan-out sink: opens `total` WebSockets over raw TCP and then only parses frame headers to count the
// text frames each socket receives (no unmasking, no UTF-8 check, no JSON), so it stays cheaper than any
// server it measures. For Socket.IO it also joins the default namespace ("40") after the engine.io open and
// answers engine.io's pings. In `welcome` mode (the gateway, and bare ws speaking the same protocol) it skips
// each socket's first frame (the welcome every alerts connection starts with), so only broadcasts count.
// In `subscribe` mode (the gateway's /ws) each socket sends a subscribe frame per channel of SINK_SUBSCRIBE (a
// comma list; `{i}` is replaced by the socket's index modulo SINK_CHANNEL_SPREAD, default 100) and counts its
// `subscribed` answers as the handshake. SINK_TOKENS: a JSON file of one token per socket, put where the URL says
// TOKEN, so that every connection is its own user (production's shape).
// In `sse` mode (the gateway's GET /sse) each socket is a plain HTTP request for the URL, its token (SINK_TOKENS)
// in `Authorization: Bearer`, and the event stream is counted by its `data:` lines (bench/load/sse-events.js: a
// native indexOf per TCP chunk, no parsing of the events): the first event, the welcome, is the handshake, every
// later one a frame.
// IPC: dial -> dialed; expect {total} -> got (once that many frames arrived since the dial); close.
'use strict';
const net = require('node:net');
const { readFileSync } = require('node:fs');
const { upgradeRequest, maskedText, JOIN_NAMESPACE, PONG } = require('./handshake');
const { sseCounter } = require('./sse-events');
const [target, total, mode] = [new URL(process.argv[2]), Number(process.argv[3]), process.argv[4] || 'ws'];
const CONCURRENCY = 200;
const tokens = process.env.SINK_TOKENS ? JSON.parse(readFileSync(process.env.SINK_TOKENS, 'utf8')) : undefined;
const request = tokens ? undefined : upgradeRequest(target);
const requestFor = (i) => {
  if (mode === 'sse') {
    const token = tokens ? tokens[i % tokens.length] : process.env.SINK_TOKEN;
    return Buffer.from(`GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  }
  return request ?? upgradeRequest(new URL(target.href.replace('TOKEN', tokens[i % tokens.length])));
};
const subscribeTo = process.env.SINK_SUBSCRIBE ? process.env.SINK_SUBSCRIBE.split(',') : [];
const spread = Number(process.env.SINK_CHANNEL_SPREAD || 100);
const subscribeFrames = (i) => Buffer.concat(subscribeTo.map((c) => maskedText(JSON.stringify({ type: 'subscribe', channel: c.replace('{i}', String(i % spread)) }))));

const sockets = [];
let frames = 0;
let target_ = Infinity;
let onTarget;
let started = 0;
let ready = 0;
let failed = 0;

/**
 * Counts text frames in a server byte stream: headers are read byte by byte, payloads skipped by chunk. A
 * one-byte text frame "2" is engine.io's ping: answered, not counted.
 */
function counter(onFrame, onPing) {
  const header = Buffer.alloc(10);
  let have = 0;
  let needed = 2;
  let skip = 0;
  let oneByteText = false;
  return (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (oneByteText) {
        oneByteText = false;
        skip = 0;
        if (chunk[i++] === 0x32) onPing();
        else onFrame();
        continue;
      }
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        continue;
      }
      header[have++] = chunk[i++];
      if (have === 2) {
        const len = header[1] & 0x7f;
        needed = len === 126 ? 4 : len === 127 ? 10 : 2;
      }
      if (have < needed) continue;
      let len = header[1] & 0x7f;
      if (len === 126) len = header.readUInt16BE(2);
      else if (len === 127) len = Number(header.readBigUInt64BE(2));
      const opcode = header[0] & 0x0f;
      have = 0;
      needed = 2;
      skip = len;
      if (opcode === 1 && len === 1) oneByteText = true;
      else if (opcode === 1) onFrame();
    }
  };
}

function dialOne(done) {
  if (started >= total) return;
  const i = started++;
  const socket = net.connect({ host: target.hostname, port: Number(target.port), localAddress: `127.0.0.${2 + (i % 8)}` });
  let head = '';
  let upgraded = false;
  let handshakeFrames = 0;
  let welcomed = mode !== 'welcome' && mode !== 'sse';
  let subscribed = 0;
  let settled = false;
  const settle = (ok) => {
    if (settled) return;
    settled = true;
    if (ok) { ready++; sockets.push(socket); } else { failed++; socket.destroy(); }
    if (ready + failed === total) done();
    else dialOne(done);
  };
  const onFrame = () => {
    if (mode === 'socketio' && handshakeFrames < 2) {
      // engine.io open ("0{...}"), then our namespace ack ("40{...}")
      handshakeFrames++;
      if (handshakeFrames === 1) socket.write(JOIN_NAMESPACE);
      if (handshakeFrames === 2) settle(true);
      return;
    }
    if (mode === 'subscribe' && subscribed < subscribeTo.length) {
      if (++subscribed === subscribeTo.length) settle(true);
      return;
    }
    if (!welcomed) {
      welcomed = true;
      // Open at the welcome, not the 101: in cluster mode a new user's subscriptions go live (Redis SUBSCRIBE)
      // before the welcome, which may follow the 101 in a write of its own; a broadcast sent between the two is
      // not owed to that socket (a receipts harness run in CI lost one that way).
      if (mode === 'welcome') settle(true);
      return;
    }
    frames++;
    if (frames >= target_ && onTarget) { const f = onTarget; onTarget = undefined; f(); }
  };
  const count = mode === 'sse'
    ? sseCounter(() => {
        if (!welcomed) settle(true);
        onFrame();
      })
    : counter(onFrame, () => mode === 'socketio' && socket.write(PONG));
  socket.on('connect', () => socket.write(requestFor(i)));
  socket.on('data', (chunk) => {
    if (upgraded) return count(chunk);
    head += chunk.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end === -1) return;
    if (!head.startsWith(mode === 'sse' ? 'HTTP/1.1 200' : 'HTTP/1.1 101')) return settle(false);
    upgraded = true;
    if (mode === 'subscribe') socket.write(subscribeFrames(i));
    else if (mode !== 'socketio' && mode !== 'sse' && mode !== 'welcome') settle(true);
    const rest = chunk.subarray(chunk.length - (head.length - end - 4));
    if (rest.length) count(rest);
  });
  socket.on('error', () => { if (!upgraded) settle(false); });
  // Closed before it counted as open (after the 101, before the welcome): a failed dial, not a hang.
  socket.on('close', () => settle(false));
}

process.on('message', async (msg) => {
  if (msg.type === 'dial') {
    await new Promise((resolve) => { for (let i = 0; i < Math.min(CONCURRENCY, total); i++) dialOne(resolve); });
    process.send({ type: 'dialed', open: ready, failed });
  }
  if (msg.type === 'expect') {
    // An absolute total: frames of this batch may arrive before this message does.
    target_ = msg.total;
    const deadline = setTimeout(() => { onTarget = undefined; process.send({ type: 'got', frames, timedOut: true }); }, msg.timeoutMs ?? 30_000);
    onTarget = () => { clearTimeout(deadline); process.send({ type: 'got', frames }); };
    if (frames >= target_) onTarget();
  }
  if (msg.type === 'close') {
    // RST, not FIN: thousands of sockets per round would otherwise sit in TIME_WAIT on the load side, and the
    // kernel's port search for the next round's connects (bound to 127.0.0.x) slows the dial down.
    for (const socket of sockets) socket.resetAndDestroy();
    process.send({ type: 'closed' });
    setTimeout(() => process.exit(0), 50);
  }
});
process.send({ type: 'ready' });
