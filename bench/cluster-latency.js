#!/usr/bin/env node
// npm run bench:cluster [-- --rate 1000 --seconds 10 --subscribers 100]
// Cross-replica publish -> deliver latency in cluster mode: a throwaway redis-server, two gateway processes
// (A and B, pinned to core 0), subscribers on B, and alerts POSTed to A at a fixed open-loop rate by this
// process (core 1). Latency runs from each alert's scheduled send time (so a stalled server cannot hide its
// queueing: no coordinated omission) to its arrival at each subscriber, through HTTP, XADD, B's XREAD tail
// and B's socket write.
'use strict';
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const { createServer, connect } = require('node:net');
const { join } = require('node:path');
const http = require('node:http');
const jwt = require('jsonwebtoken');
const WebSocket = require('ws');

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(argv[i + 1]);
};
const RATE = opt('rate', 1000);
const SECONDS = opt('seconds', 10);
const SUBSCRIBERS = opt('subscribers', 10);
const WARMUP_SECONDS = 3; // cold start (JIT, keep-alive sockets) builds a backlog that takes ~2 s to drain
const SECRET = 'bench-secret-bench-secret-bench-secret!!';
const ROOT = join(__dirname, '..');
const now = () => performance.timeOrigin + performance.now();

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function untilListening(port) {
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`nothing listens on ${port}`);
}

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await untilListening(port);
  return { proc, url: `redis://127.0.0.1:${port}/0` };
}

async function startReplica(name, redisUrl) {
  const port = await freePort();
  const proc = spawn('taskset', ['-c', '0', process.execPath, join(ROOT, 'dist', 'main.js')], {
    env: { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', NODE_ID: name, REDIS_URL: redisUrl, JWT_SECRET: SECRET, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await untilListening(port);
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    if (res && res.status === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { proc, port };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  process.stderr.write(`cluster latency: ${RATE} alerts/s for ${SECONDS} s (+${WARMUP_SECONDS} s warm-up), ${SUBSCRIBERS} subscribers on replica B\n`);
  const redis = await startRedis();
  const [a, b] = await Promise.all([startReplica('bench-a', redis.url), startReplica('bench-b', redis.url)]);
  const cleanup = () => [a.proc, b.proc, redis.proc].forEach((p) => p.kill('SIGKILL'));
  process.on('exit', cleanup);

  const subToken = jwt.sign({ sub: 'bench-sub', role: 'authority' }, SECRET, { expiresIn: 3600 });
  const pubToken = jwt.sign({ sub: 'bench-pub', role: 'service' }, SECRET, { expiresIn: 3600 });
  const samples = [];
  let start = Infinity;
  let measureFrom = Infinity; // scheduled send time of the first measured alert
  const sockets = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/api/alerts/subscribe`, ['bearer', subToken]);
    ws.on('message', (data) => {
      const arrived = now();
      const frame = JSON.parse(data);
      if (frame.type === 'alert' && frame.data.at >= measureFrom) samples.push(arrived - frame.data.at);
    });
    await once(ws, 'open');
    sockets.push(ws);
  }

  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let failed = 0;
  const post = (at) =>
    new Promise((resolve) => {
      const body = JSON.stringify({ data: { at } });
      const req = http.request(
        { host: '127.0.0.1', port: a.port, path: '/api/alerts', method: 'POST', agent, headers: { authorization: `Bearer ${pubToken}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          if (res.statusCode !== 202) failed++;
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('error', () => (failed++, resolve()));
      req.end(body);
    });

  // Open loop: every tick, send whatever the schedule says is due, stamped with its scheduled time.
  const total = RATE * (SECONDS + WARMUP_SECONDS);
  start = now() + 10;
  const interval = 1000 / RATE;
  let sent = 0;
  const inflight = new Set();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((now() - start) / interval) + 1);
      while (sent < due) {
        const at = start + sent * interval;
        sent++;
        if (sent === RATE * WARMUP_SECONDS) measureFrom = at + interval;
        const p = post(at);
        inflight.add(p);
        p.then(() => inflight.delete(p));
      }
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await Promise.all(inflight);
  const expected = RATE * SECONDS * SUBSCRIBERS;
  const deadline = Date.now() + 10_000;
  while (samples.length < expected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));

  const metrics = await (await fetch(`http://127.0.0.1:${b.port}/metrics`)).text();
  const sorted = samples.sort((x, y) => x - y);
  const ms = (v) => `${v.toFixed(2)} ms`;
  const result = {
    rate: RATE,
    seconds: SECONDS,
    subscribers: SUBSCRIBERS,
    deliveries: samples.length,
    expected,
    failedPosts: failed,
    p50: ms(percentile(sorted, 50)),
    p99: ms(percentile(sorted, 99)),
    p999: ms(percentile(sorted, 99.9)),
    max: ms(sorted[sorted.length - 1]),
  };
  console.log(JSON.stringify(result, null, 2));
  const delivery = metrics.split('\n').filter((l) => l.startsWith('ws_delivery_seconds_count') || l.startsWith('ws_delivery_seconds_sum'));
  console.log(`replica B ${delivery.join(', ')}`);
  for (const ws of sockets) ws.terminate();
  agent.destroy();
  cleanup();
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
