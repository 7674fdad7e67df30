// One client process of `npm run bench:scale` (bench/scale.js): holds its share of the connections to one
// server over raw TCP, from rotating 127.0.0.x source addresses, and measures what its sockets see.
//   node scale-client.js <peer: gateway|ws|socketio> <port> <first index> <count>
// SCALE_TOKENS: a JSON file of one token per connection of the whole run (gateway only; each its own user).
// It answers the server's heartbeats like a real client: WebSocket pings (G) with a pong, engine.io's "2" (S) with
// "3"; every broadcast frame's arrival is timed against the time the runner scheduled it (no coordinated
// omission), into a 0.1 ms histogram; on a drain it reconnects every socket with the SDK's own policy
// (src/client/realtime-client.ts `schedule`: 1012/1001 at once with up to RESTART_JITTER_MS of jitter, a refusal
// with Retry-After after that long plus the jitter, anything else backoffDelay) to the port it is given.
// IPC: dial -> dialed {open, failed}; mark {startAt, count, intervalMs, timeoutMs} -> got {histogram, frames,
// complete}; drain {port, t0, timeoutMs} -> drained; close -> closed (every socket reset).
'use strict';
const net = require('node:net');
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { upgradeRequest, JOIN_NAMESPACE, PONG } = require('./handshake');
const { backoffDelay, RESTART_JITTER_MS } = require(join(__dirname, '..', '..', 'dist', 'client', 'backoff'));

const [peer, port, first, count] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])];
const tokens = process.env.SCALE_TOKENS ? JSON.parse(readFileSync(process.env.SCALE_TOKENS, 'utf8')) : undefined;
const ADDRESSES = Number(process.env.SCALE_ADDRESSES || 8); // 127.0.0.2 … : ~28k ephemeral ports each
const CONCURRENCY = 200; // handshakes in flight per client process
const PATHS = {
  gateway: (i) => `/api/alerts/subscribe?token=${tokens[i]}`,
  ws: () => '/',
  socketio: () => '/socket.io/?EIO=4&transport=websocket',
};
const now = () => performance.timeOrigin + performance.now();

// Latency histogram: 0.1 ms buckets up to 60 s (the last bucket takes anything later).
const BUCKETS = 600_000;
let histogram = new Uint32Array(BUCKETS);
const record = (ms) => histogram[Math.max(0, Math.min(BUCKETS - 1, Math.round(ms * 10)))]++;

const conns = []; // every connection of this process, by local index
const lost = {}; // close code -> connections the server closed outside a drain
let mark; // { startAt, intervalMs, count, pending, done } while a broadcast is measured
let drain; // { port, t0, closes: [], reconnects: [], refused, pending, done } while a drain runs

/** A masked client frame of `opcode` (mask key 0, so the payload goes as is; payload ≤ 125 bytes). */
const masked = (opcode, payload) => Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload]);

/**
 * Parses a server byte stream frame by frame: text payloads are skipped unread except a one-byte one (engine.io's
 * ping "2" is answered); control frames (ping, close) are collected whole to answer them.
 */
function parser(conn) {
  const header = Buffer.alloc(10);
  let have = 0;
  let needed = 2;
  let skip = 0;
  let control; // { opcode, payload, at } while a control frame's payload is read
  let oneByte = false;
  return (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (oneByte) {
        oneByte = false;
        skip = 0;
        if (chunk[i++] === 0x32 && peer === 'socketio') conn.socket.write(PONG);
        else text(conn);
        continue;
      }
      if (control) {
        const n = Math.min(control.payload.length - control.at, chunk.length - i);
        chunk.copy(control.payload, control.at, i, i + n);
        control.at += n;
        i += n;
        if (control.at === control.payload.length) {
          const c = control;
          control = undefined;
          controlFrame(conn, c.opcode, c.payload);
        }
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
      if (opcode >= 8) {
        if (len === 0) controlFrame(conn, opcode, Buffer.alloc(0));
        else control = { opcode, payload: Buffer.alloc(len), at: 0 };
        continue;
      }
      skip = len;
      if (opcode === 1 && len === 1) oneByte = true;
      else if (opcode === 1) text(conn);
    }
  };
}

function controlFrame(conn, opcode, payload) {
  if (opcode === 9) conn.socket.write(masked(0xa, payload)); // ping -> pong with its payload
  if (opcode === 8) {
    conn.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    conn.socket.write(masked(0x8, payload.subarray(0, 2))); // answer the close, as a client does
    conn.socket.end();
  }
}

/** A text frame: the handshake's (welcome; S: open, then the namespace ack) or a broadcast. */
function text(conn) {
  if (conn.handshake > 0) {
    conn.handshake--;
    if (peer === 'socketio' && conn.handshake === 1) conn.socket.write(JOIN_NAMESPACE);
    if (conn.handshake === 0) conn.onOpen();
    return;
  }
  if (!mark || conn.seen >= mark.count) return;
  record(now() - (mark.startAt + conn.seen * mark.intervalMs));
  mark.frames++;
  if (++conn.seen === mark.count && --mark.pending === 0) mark.done();
}

/**
 * Opens connection `i` (local index); calls settle(true) once its handshake is complete (G, W: the welcome frame;
 * S: the namespace ack), settle(false, status, retryAfter) if refused or reset before.
 */
function open(i, toPort, settle) {
  const index = first + i;
  const conn = conns[i] ?? (conns[i] = { i });
  conn.handshake = peer === 'socketio' ? 2 : 1;
  conn.seen = 0;
  conn.closeCode = undefined;
  let upgraded = false;
  let done = false;
  const finish = (...result) => {
    if (done) return;
    done = true;
    settle(...result);
  };
  let opened = false;
  conn.onOpen = () => {
    opened = true;
    finish(true);
  };
  const socket = net.connect({ host: '127.0.0.1', port: toPort, localAddress: `127.0.0.${2 + (index % ADDRESSES)}` });
  conn.socket = socket;
  const parse = parser(conn);
  let head = '';
  socket.on('connect', () => socket.write(upgradeRequest(new URL(`ws://127.0.0.1:${toPort}${PATHS[peer](index)}`))));
  socket.on('data', (chunk) => {
    if (upgraded) return parse(chunk);
    head += chunk.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end === -1) return;
    if (!head.startsWith('HTTP/1.1 101')) {
      const status = Number(head.slice(9, 12));
      const retry = /\r\nretry-after: *(\d+)/i.exec(head.slice(0, end));
      socket.destroy();
      return finish(false, status, retry ? Number(retry[1]) * 1000 : undefined);
    }
    upgraded = true;
    const rest = chunk.subarray(chunk.length - (head.length - end - 4));
    head = '';
    if (rest.length) parse(rest);
  });
  let error = '';
  socket.on('error', (e) => (error = e.code ?? 'error')); // 'close' follows
  socket.on('close', () => {
    if (!done) return finish(false, 0, undefined, upgraded ? 'closed before the handshake ended' : error || 'closed before an answer');
    if (!opened || conn.socket !== socket) return;
    if (drain) return closed(conn);
    // Closed by the server outside a drain (G: 1013 for a client too slow to read, 1006 for a missed heartbeat):
    // counted, and no longer waited for.
    conn.socket = undefined;
    const code = conn.closeCode ?? 1006;
    lost[code] = (lost[code] ?? 0) + 1;
    if (mark && conn.seen < mark.count && --mark.pending === 0) mark.done();
  });
}

/**
 * Dials every connection (CONCURRENCY in flight) to `toPort`; resolves with how many opened. A connection refused
 * or reset is tried again up to RETRIES times, as a client would (counted in `retries`, with the reasons).
 */
const RETRIES = 3;
function dialAll(toPort) {
  return new Promise((resolve) => {
    let next = 0;
    let ok = 0;
    let failed = 0;
    let retries = 0;
    const reasons = {};
    const queue = []; // [index, attempt] of connections to try again
    const one = () => {
      const [i, attempt] = queue.length ? queue.shift() : next < count ? [next++, 0] : [];
      if (i === undefined) return;
      open(i, toPort, (success, status, _retryAfter, why) => {
        if (success) ok++;
        else {
          const reason = status ? `HTTP ${status}` : why;
          reasons[reason] = (reasons[reason] ?? 0) + 1;
          if (attempt < RETRIES) {
            retries++;
            queue.push([i, attempt + 1]);
          } else failed++;
        }
        if (ok + failed === count) resolve({ open: ok, failed, retries, reasons });
        else one();
      });
    };
    for (let k = 0; k < Math.min(CONCURRENCY, count); k++) one();
  });
}

/** A connection of the drained server closed: when the SDK would reconnect, and to the other replica. */
function closed(conn) {
  const at = now();
  drain.closes.push(at - drain.t0);
  drain.codes[conn.closeCode ?? 1006] = (drain.codes[conn.closeCode ?? 1006] ?? 0) + 1;
  let attempt = 0;
  const delayAfterClose = conn.closeCode === 1012 || conn.closeCode === 1001 ? Math.floor(Math.random() * RESTART_JITTER_MS) : backoffDelay(attempt++);
  conn.socket = undefined;
  const retry = () =>
    open(conn.i, drain.port, (ok, status, retryAfterMs, why) => {
      if (ok) {
        drain.reconnects.push(now() - drain.t0);
        if (--drain.pending === 0) drain.done();
        return;
      }
      const reason = status ? `HTTP ${status}` : why;
      drain.refused[reason] = (drain.refused[reason] ?? 0) + 1;
      const delay = retryAfterMs !== undefined ? retryAfterMs + Math.floor(Math.random() * RESTART_JITTER_MS) : backoffDelay(attempt++);
      setTimeout(retry, delay);
    });
  setTimeout(retry, delayAfterClose);
}

/** The non-empty buckets of the histogram, [bucket, count] pairs (IPC carries them cheaply). */
const sparse = (h) => {
  const out = [];
  for (let b = 0; b < h.length; b++) if (h[b]) out.push([b, h[b]]);
  return out;
};

process.on('message', async (msg) => {
  if (msg.type === 'dial') {
    const result = await dialAll(port);
    process.send({ type: 'dialed', ...result });
  }
  if (msg.type === 'mark') {
    // Frames of broadcast k are timed from startAt + k × intervalMs, whenever they arrive.
    histogram = new Uint32Array(BUCKETS);
    const live = conns.filter((c) => c.socket && c.handshake === 0);
    for (const c of live) c.seen = 0;
    const timer = setTimeout(() => report(false), msg.timeoutMs);
    const report = (complete) => {
      clearTimeout(timer);
      const m = mark;
      mark = undefined;
      const socketsComplete = live.filter((c) => c.seen >= m.count).length;
      process.send({ type: 'got', complete: complete && socketsComplete === live.length, frames: m.frames, histogram: sparse(histogram), socketsComplete, sockets: live.length, lost });
    };
    mark = { startAt: msg.startAt, count: msg.count, intervalMs: msg.intervalMs, frames: 0, pending: live.length, done: () => report(true) };
    process.send({ type: 'marked' });
    if (live.length === 0) report(true);
  }
  if (msg.type === 'drain') {
    const timer = setTimeout(() => report(false), msg.timeoutMs);
    const report = (complete) => {
      clearTimeout(timer);
      const d = drain;
      drain = undefined;
      process.send({ type: 'drained', complete, closes: d.closes, reconnects: d.reconnects, codes: d.codes, refused: d.refused });
    };
    drain = { port: msg.port, t0: msg.t0, closes: [], reconnects: [], codes: {}, refused: {}, pending: conns.filter((c) => c.socket).length, done: () => report(true) };
    process.send({ type: 'draining' });
  }
  if (msg.type === 'close') {
    // RST, not FIN: no TIME_WAIT left on the load side for the next server's dial (bench/load/sink.js).
    for (const c of conns) c.socket?.resetAndDestroy();
    process.send({ type: 'closed' });
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0)); // the runner is gone: never outlive it
process.send({ type: 'ready' });
