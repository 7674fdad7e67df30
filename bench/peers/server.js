// A server under test, run in its own process (pinned by the runner) with --expose-gc, driven over IPC:
//   gateway:  the real service (dist/), embedded mode;  gateway-cluster: the same with REDIS_URL (XADD, tail)
//   ws:       a bare `ws` server, no auth, serialise once and one write per message per socket (W)
//   ws8:      the same, but the messages of a burst go out in one write per socket (W8, the Node limit)
//   socketio: Socket.IO 4.8 with @socket.io/redis-adapter, websocket transport only, no compression (S)
// IPC: memory -> memory; schedule {startAt, count, intervalMs} -> scheduled (one broadcast each at startAt + k × intervalMs, wall-clock ms; bench/scale.js); SIGTERM (G): the product's drain (src/main.ts), then exit; subscribe {channel} -> subscribed; publish-channel {channel, count, burst, rate?}; received {channel, total} -> received {count} (once that many arrived); cpu -> cpu; open -> open {count}; accepting {sub?} -> accepting {count} (open, not closing; G: of that user); broadcast {count, burst, rate?} -> broadcasted (after the last burst is queued); hops -> hops {request, published, woke, bus} (BENCH_HOPS=1: per-hop timestamps keyed by the bench's `at`, bench/cluster-latency.js).
'use strict';
const kind = process.argv[2];
const TEXT = 'x'.repeat(950); // with the envelope, about 1 KB per message

let broadcast; // (burst: number) => void, one burst of messages to every subscriber
let broadcastAt; // (at: number, text: string) => void, one message stamped with its publish time
let openSockets; // () => number, sockets the server still holds
let acceptingSockets; // (sub?) => number, of those the ones still open for messages (not closing); G can filter by user
let internalPort; // G: the internal listener (POST /api/alerts); the other peers serve everything on one port
/**
 * BENCH_HOPS=1 (bench/cluster-latency.js --hops): wall-clock times per alert, keyed by the publisher's `at` (its
 * x-bench-at header, or data.at): `request` when the POST's request event fires (prepended, before the server's
 * own listener), `published` when the publish was written to Redis (G: the broker's publish wrote its script; S: io.emit
 * returned, having written its PUBLISH), `woke` when a read of the alerts tail returned it (G only), `bus` when
 * this replica handed it to its channel's handlers (G: the ordered channel's dispatch; S: the adapter's pub/sub
 * message, decoded only when asked: its Buffers are off the heap).
 */
const HOPS = process.env.BENCH_HOPS === '1';
const hopNow = () => performance.timeOrigin + performance.now();
const hopRaw = { request: [], published: [], woke: [], bus: [] };
let decodeHops = () => ({ request: [], published: [], woke: [], bus: [] });
function tapRequests(server) {
  server.prependListener('request', (req) => {
    const at = req.headers['x-bench-at'];
    if (at !== undefined) hopRaw.request.push([hopNow(), Number(at)]);
  });
}
let channel; // G: { subscribe(name), publish(name, burst), receivedAtLeast(name, total) } straight on the broker

async function start() {
  if (kind === 'gateway' || kind === 'gateway-cluster') {
    const { startGateway } = require('../../dist/app');
    const { loadConfig } = require('../../dist/config/config');
    const { createLogger, batchedDestination } = require('../../dist/logging/logger');
    const { AlertsService } = require('../../dist/alerts/alerts.service');
    const { config } = loadConfig({ ...process.env, PORT: '0', HOST: '127.0.0.1', INTERNAL_PORT: '0', INTERNAL_HOST: '127.0.0.1' });
    // Logs are part of the product cost: keep them on, through the product's own destination, to /dev/null.
    const log = createLogger(config.logLevel, config.nodeId, batchedDestination(require('node:fs').openSync(process.env.BENCH_LOG_FILE || '/dev/null', 'a')));
    const gw = await startGateway(config, log);
    // SIGTERM as src/main.ts answers it: readiness and upgrades flip, the sockets are closed with 1012 spread over
    // DRAIN_WINDOW_MS, then the process exits (bench/scale.js times the drain and the reconnects).
    process.once('SIGTERM', () => {
      void gw.connections.drain();
      gw.close().then(() => process.exit(0), () => process.exit(1));
    });
    const alerts = gw.app.get(AlertsService);
    let n = 0;
    // bench/receipts.js: alerts targeted at BENCH_ALERT_USERS users (u-0 …), asking for ack within BENCH_ALERT_ACK s.
    const targeting = {};
    if (process.env.BENCH_ALERT_USERS) targeting.users = Array.from({ length: Number(process.env.BENCH_ALERT_USERS) }, (_, i) => `u-${i}`);
    if (process.env.BENCH_ALERT_ACK) targeting.ack = { within_s: Number(process.env.BENCH_ALERT_ACK) };
    broadcast = (burst) => {
      for (let i = 0; i < burst; i++) void alerts.publish({ data: { n: n++, text: TEXT }, ...targeting });
    };
    broadcastAt = (at, text) => void alerts.publish({ data: { at, text } });
    // A chat-like channel (history, pub/sub notices, no stream tail) for Redis's cost per message: a handler on
    // the broker counts what this replica receives; no sockets involved.
    const broker = gw.app.get(require('../../dist/channels/broker').BROKER);
    const counts = new Map();
    const waiters = new Map(); // name -> { total, resolve }
    channel = {
      subscribe: async (name) => {
        counts.set(name, 0);
        const handler = () => {
          const count = counts.get(name) + 1;
          counts.set(name, count);
          const waiter = waiters.get(name);
          if (waiter && count >= waiter.total) (waiters.delete(name), waiter.resolve(count));
        };
        await broker.subscribe(name, handler, { history: true }).ready;
      },
      /** Resolves with the count once this replica received `total` publications of the channel. */
      receivedAtLeast: (name, total) => (counts.get(name) >= total ? Promise.resolve(counts.get(name)) : new Promise((resolve) => waiters.set(name, { total, resolve }))),
      publish: (name, burst) => {
        for (let i = 0; i < burst; i++) void broker.publish(name, { n: n++, text: TEXT }, { history: true });
      },
    };
    openSockets = () => gw.connections.registry.size;
    acceptingSockets = (sub) => {
      let n = 0;
      for (const conn of gw.connections.registry.all()) if (conn.isOpen && (sub === undefined || conn.user.sub === sub)) n++;
      return n;
    };
    internalPort = gw.internalPort;
    if (HOPS) tapGateway(gw);
    return gw.port;
  }
  if (kind === 'ws' || kind === 'ws8') {
    const { WebSocketServer } = require('ws');
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    await new Promise((resolve) => wss.on('listening', resolve));
    let n = 0;
    let lastId = '0-0';
    // SPEC v2: every alerts connection starts with a welcome frame (epoch and position); W sends one too, so
    // the upgrade rows compare the same protocol work.
    wss.on('connection', (client) => client.send(JSON.stringify({ type: 'welcome', epoch: 'a1b2c3d4e5f6', id: lastId })));
    const encode = () => Buffer.from(JSON.stringify({ type: 'alert', id: (lastId = `${Date.now()}-${n}`), data: { n: n++, text: TEXT }, ts: Date.now() }));
    broadcast = (burst) => {
      const frames = Array.from({ length: burst }, encode); // serialise once per message
      for (const client of wss.clients) {
        if (kind === 'ws8') client._socket.cork();
        for (const frame of frames) client.send(frame, { binary: false }); // text, like every peer
        if (kind === 'ws8') client._socket.uncork();
      }
    };
    openSockets = () => wss.clients.size;
    acceptingSockets = () => [...wss.clients].filter((c) => c.readyState === 1).length;
    return wss.address().port;
  }
  if (kind === 'socketio') {
    const { createServer } = require('node:http');
    const { Server } = require('socket.io');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const Redis = require('ioredis');
    const pub = new Redis(process.env.REDIS_URL);
    const sub = pub.duplicate();
    const jwt = require('jsonwebtoken');
    const { createSecretKey } = require('node:crypto');
    const key = createSecretKey(Buffer.from(process.env.JWT_SECRET));
    let n = 0;
    // What a Socket.IO user would write to let other services publish: POST /api/alerts, JWT-checked, io.emit.
    const http = createServer((req, res) => {
      if (req.method !== 'POST' || req.url !== '/api/alerts') return res.writeHead(404).end();
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        try {
          const claims = jwt.verify(String(req.headers.authorization).slice(7), key, { algorithms: ['HS256'] });
          if (claims.role !== 'service' && claims.role !== 'admin') return res.writeHead(403).end();
          const { data } = JSON.parse(body);
          const alert = { id: `${Date.now()}-${n++}`, data, ts: Date.now() };
          io.emit('alert', alert);
          res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id: alert.id, ts: alert.ts }));
        } catch {
          res.writeHead(400).end();
        }
      });
    });
    const io = new Server(http, { transports: ['websocket'], perMessageDeflate: false, adapter: createAdapter(pub, sub) });
    if (HOPS) {
      tapRequests(http);
      const emit = io.emit.bind(io);
      io.emit = (event, alert) => {
        const result = emit(event, alert);
        if (alert?.data?.at !== undefined) hopRaw.published.push([hopNow(), alert.data.at]);
        return result;
      };
      sub.prependListener('pmessageBuffer', (_pattern, _channel, payload) => hopRaw.bus.push([hopNow(), payload]));
      const notepack = require('notepack.io');
      decodeHops = () => ({
        request: hopRaw.request,
        published: hopRaw.published,
        woke: [],
        bus: hopRaw.bus.flatMap(([t, payload]) => {
          try {
            const at = notepack.decode(payload)[1]?.data?.[1]?.data?.at;
            return at === undefined ? [] : [[t, at]];
          } catch {
            return [];
          }
        }),
      });
    }
    await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
    broadcast = (burst) => {
      for (let i = 0; i < burst; i++) io.emit('alert', { id: `${Date.now()}-${n}`, data: { n: n++, text: TEXT }, ts: Date.now() });
    };
    broadcastAt = (at, text) => io.emit('alert', { id: `${Date.now()}-${n++}`, data: { at, text }, ts: Date.now() });
    openSockets = () => io.engine.clientsCount;
    acceptingSockets = () => [...io.of('/').sockets.values()].filter((sock) => sock.connected && sock.conn.readyState === 'open').length;
    return http.address().port;
  }
  throw new Error(`unknown peer ${kind}`);
}

/** G's taps (BENCH_HOPS=1): the internal listener, the broker's publish, the blocking link's reads, the ordered channels. */
function tapGateway(gw) {
  tapRequests(gw.app.getHttpServer());
  const { RedisBroker } = require('../../dist/channels/redis/redis-broker');
  const { OrderedChannel } = require('../../dist/channels/redis/ordered-channel');
  const { RedisConnections } = require('../../dist/redis/redis-connections');
  const publish = RedisBroker.prototype.publish;
  RedisBroker.prototype.publish = function (name, data, options) {
    // Stamped once the script is written to the Redis link (ioredis writes it before publish returns its
    // promise), as S is stamped once io.emit wrote its PUBLISH: the hops after it then compare.
    const promise = publish.call(this, name, data, options);
    const at = data?.data?.at; // an alert's payload: { data, … }
    if (at !== undefined) hopRaw.published.push([hopNow(), at]);
    return promise;
  };
  // Only numbers are kept (the `at` of each entry, read from its `p` field without parsing it): keeping the
  // replies themselves would hold their strings on the heap for the whole run and slow G's collections.
  const atOfFields = (fields) => {
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] !== 'p') continue;
      const from = fields[i + 1].indexOf('"at":');
      return from === -1 ? undefined : Number.parseFloat(fields[i + 1].slice(from + 5, from + 40));
    }
    return undefined;
  };
  const blocking = gw.app.get(RedisConnections).blocking;
  const xread = blocking.xread.bind(blocking);
  blocking.xread = (...args) => {
    const reply = xread(...args);
    // Every read of the tail (the blocking one, and the one after a wake that picks up the rest of a burst), stamped
    // as it returns, before the tail merges the two.
    reply.then((r) => {
      if (!r) return;
      const t = hopNow();
      for (const [, entries] of r) for (const [, fields] of entries) hopRaw.woke.push(t, atOfFields(fields));
    }, () => undefined);
    return reply;
  };
  // The hand-off to the channel's handlers, whichever way the publication came (a read, a notice, a gap filled).
  const dispatch = OrderedChannel.prototype.dispatch;
  OrderedChannel.prototype.dispatch = function (publication) {
    hopRaw.bus.push(hopNow(), publication.data?.data?.at);
    return dispatch.call(this, publication);
  };
  const pairs = (flat) => {
    const out = [];
    for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i + 1] !== undefined && !Number.isNaN(flat[i + 1])) out.push([flat[i], flat[i + 1]]);
    return out;
  };
  decodeHops = () => ({ request: hopRaw.request, published: hopRaw.published, woke: pairs(hopRaw.woke), bus: pairs(hopRaw.bus) });
}

function memory() {
  global.gc();
  global.gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, cpu: process.cpuUsage() };
}

/**
 * `msg.count` bursts of `msg.burst` messages: back to back (one per turn of the event loop), or paced so that
 * no more than `msg.rate` messages per second go out (a fixed rate keeps Redis's batching the same whatever the
 * number of replicas, so costs measured at different replica counts compare).
 */
function bursts(msg, send, done = () => {}) {
  let left = msg.count;
  if (!msg.rate) {
    const next = () => {
      send();
      if (--left > 0) setImmediate(next);
      else done();
    };
    return next();
  }
  const start = performance.now();
  let sent = 0;
  const tick = () => {
    const due = Math.min(msg.count, Math.floor(((performance.now() - start) * msg.rate) / 1000 / msg.burst) + 1);
    while (sent < due) {
      sent++;
      left--;
      send();
    }
    if (left > 0) setTimeout(tick, 1);
    else done();
  };
  tick();
}

process.on('SIGINT', () => process.exit(0)); // lets --cpu-prof write its profile

/**
 * `stalls` -> stalls {loop, gc}: this process's event-loop delay (p50/p99/max, ms) and its GC pauses (count, total
 * and longest, ms, by kind) since the last `stalls` (bench/cluster-latency.js: what a replica's tail is made of).
 * The first `stalls` starts watching and answers zeros.
 */
const { monitorEventLoopDelay, PerformanceObserver } = require('node:perf_hooks');
// Started by the first `stalls` (which then only resets): its timer (every 10 ms; each tick records how late it
// ran) wakes the server's core, which no other measure should pay.
let loopDelay;
const GC_KINDS = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
let gcPauses = {};
function watchStalls() {
  loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = GC_KINDS[entry.detail?.kind] ?? 'other';
      const g = (gcPauses[kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
      g.count++;
      g.totalMs += entry.duration;
      g.maxMs = Math.max(g.maxMs, entry.duration);
    }
  }).observe({ entryTypes: ['gc'] });
}
function stalls() {
  if (!loopDelay) watchStalls();
  // The histogram holds each tick's interval: the lateness is what exceeds the 10 ms it was due after.
  const late = (ns) => Math.max(0, ns / 1e6 - 10);
  const loop = { p50: late(loopDelay.percentile(50)), p99: late(loopDelay.percentile(99)), max: late(loopDelay.max) };
  const gc = gcPauses;
  loopDelay.reset();
  gcPauses = {};
  return { loop, gc };
}

start().then((port) => {
  process.send({ type: 'ready', port, internalPort: internalPort ?? port });
  process.on('message', (msg) => {
    if (msg.type === 'memory') process.send({ type: 'memory', ...memory() });
    if (msg.type === 'cpu') process.send({ type: 'cpu', cpu: process.cpuUsage() });
    if (msg.type === 'hops') process.send({ type: 'hops', ...decodeHops() });
    if (msg.type === 'stalls') process.send({ type: 'stalls', ...stalls() });
    if (msg.type === 'open') process.send({ type: 'open', count: openSockets() });
    if (msg.type === 'accepting') process.send({ type: 'accepting', count: acceptingSockets(msg.sub) });
    if (msg.type === 'publish-for') {
      // msg.rate messages of about msg.bytes per second for msg.seconds, each stamped with its publish time.
      const text = 'x'.repeat(Math.max(0, (msg.bytes ?? 1024) - 100));
      const nowMs = () => performance.timeOrigin + performance.now();
      const start = nowMs();
      let sent = 0;
      const total = msg.rate * msg.seconds;
      const tick = () => {
        const due = Math.min(total, Math.floor(((nowMs() - start) * msg.rate) / 1000) + 1);
        while (sent < due) {
          sent++;
          broadcastAt(nowMs(), text);
        }
        if (sent < total) setTimeout(tick, 1);
        else process.send({ type: 'published', sent });
      };
      tick();
    }
    if (msg.type === 'subscribe') void channel.subscribe(msg.channel).then(() => process.send({ type: 'subscribed' }));
    if (msg.type === 'received') void channel.receivedAtLeast(msg.channel, msg.total ?? 0).then((count) => process.send({ type: 'received', count }));
    if (msg.type === 'publish-channel') bursts(msg, () => channel.publish(msg.channel, msg.burst));
    if (msg.type === 'schedule') {
      // Open loop on the wall clock the clients share: broadcast k is due at startAt + k × intervalMs, and one
      // that is late goes out at once (the clients time each frame from when it was due).
      let k = 0;
      const tick = () => {
        const t = performance.timeOrigin + performance.now();
        while (k < msg.count && t >= msg.startAt + k * msg.intervalMs) {
          k++;
          broadcast(1);
        }
        if (k < msg.count) setTimeout(tick, Math.max(0, msg.startAt + k * msg.intervalMs - t));
        else process.send({ type: 'scheduled' });
      };
      tick();
    }
    if (msg.type === 'broadcast') bursts(msg, () => broadcast(msg.burst), () => process.send({ type: 'broadcasted' }));
  });
});
