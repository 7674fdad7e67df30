#!/usr/bin/env node
// npm run bench:ws [-- --quick] [-- --write] [-- --fanout (the fan-out rows only)]
// What one connection for many channels costs (issue 22), the gateway in embedded mode at its default log
// level, every connection its own user with its own token:
// - idle RSS and heap per connection after GC: the alerts path endpoint (`alerts` + the user's own channel),
//   /ws holding 1 channel, /ws holding 10 (alerts and 9 of 100 `feed:` channels shared by the users);
// - deliveries per server CPU-second of ~1 KB alerts to N subscribers: the path endpoint against /ws subscribed
//   to `alerts` (the same publication, encoded once per vocabulary).
// - the subscribe proxy: a /ws subscribe's round trip on an `any` namespace against a `proxy` one whose backend
//   (a local HTTP server in this process) allows, the backend's own round trip, and backend requests per
//   subscribe (the issue's bound: at most one).
// Peers interleave within each round (P W1 W10 …); medians with min–max. Server on core 0, sinks on core 1.
'use strict';
const { cpus, totalmem, tmpdir } = require('node:os');
const { mkdtempSync, writeFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { spawn } = require('node:child_process');
const jwt = require('jsonwebtoken');
const { startServer, runPinned, SECRET } = require('./fanout');

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const ROUNDS = Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 3);
const IDLE = quick ? 2000 : 5000;
const FANOUT = 1000;
const DELIVERIES = quick ? 100_000 : 300_000;

const dir = mkdtempSync(join(tmpdir(), 'rt-bench-ws-'));
const channelsFile = join(dir, 'channels.yaml');
writeFileSync(channelsFile, 'namespaces:\n  feed:\n    history: { size: 100 }\n');
const proxyChannelsFile = join(dir, 'channels-proxy.yaml');
writeFileSync(proxyChannelsFile, 'namespaces:\n  feed:\n    history: { size: 100 }\n  vip:\n    history: { size: 100 }\n    subscribe: { mode: proxy }\n');
const PROXY_SUBSCRIBES = quick ? 300 : 1000;
/** One token per socket: production's shape (per-user state is part of the cost). */
function tokensFile(count, role) {
  const file = join(dir, `tokens-${role}-${count}.json`);
  const tokens = Array.from({ length: count }, (_, i) => jwt.sign({ sub: `u-${i}`, role }, SECRET, { expiresIn: 3600 }));
  writeFileSync(file, JSON.stringify(tokens));
  return file;
}

const SHAPES = {
  path: { url: '/api/alerts/subscribe?token=TOKEN', mode: 'welcome', subscribe: [] },
  ws1: { url: '/ws?token=TOKEN', mode: 'subscribe', subscribe: ['alerts'] },
  ws10: { url: '/ws?token=TOKEN', mode: 'subscribe', subscribe: ['alerts', ...Array.from({ length: 9 }, (_, k) => `feed:{i}-${k}`)] },
};

function sink(port, shape, count, tokens) {
  const { url, mode, subscribe } = SHAPES[shape];
  const argv = [join(__dirname, 'load', 'sink.js'), `ws://127.0.0.1:${port}${url}`, String(count), mode];
  const proc = spawn('taskset', ['-c', '1', process.execPath, ...argv], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, SINK_TOKENS: tokens, SINK_SUBSCRIBE: subscribe.join(','), SINK_CHANNEL_SPREAD: '100' },
  });
  const next = (type) =>
    new Promise((resolve, reject) => {
      const exit = (code) => reject(new Error(`sink exited with ${code} waiting for ${type}`));
      const on = (msg) => {
        if (msg.type !== type) return;
        proc.off('message', on);
        proc.off('exit', exit);
        resolve(msg);
      };
      proc.on('message', on);
      proc.once('exit', exit);
    });
  return { proc, next, send: (m) => proc.send(m) };
}

async function dial(s, what) {
  await s.next('ready');
  s.send({ type: 'dial' });
  const dialed = await s.next('dialed');
  if (dialed.failed) throw new Error(`${what}: ${dialed.failed} sockets failed to open`);
}

async function close(s) {
  s.send({ type: 'close' });
  await s.next('closed').catch(() => undefined);
}

async function idle(shape, tokens) {
  const server = await startServer('gateway', '', 0, { CHANNELS_FILE: channelsFile });
  try {
    server.send({ type: 'memory' });
    const before = await server.next('memory');
    const s = sink(server.port, shape, IDLE, tokens);
    await dial(s, shape);
    server.send({ type: 'memory' });
    const after = await server.next('memory');
    await close(s);
    return { rss: (after.rss - before.rss) / IDLE, heap: (after.heapUsed - before.heapUsed) / IDLE };
  } finally {
    server.kill();
  }
}

async function fanout(shape, tokens) {
  const server = await startServer('gateway', '', 0, { CHANNELS_FILE: channelsFile });
  const s = sink(server.port, shape, FANOUT, tokens);
  const results = {};
  let expected = 0;
  const cpu = async () => {
    server.send({ type: 'cpu' });
    const { cpu: c } = await server.next('cpu');
    return (c.user + c.system) / 1e6;
  };
  try {
    await dial(s, shape);
    for (const [name, burst] of [['single', 1], ['burst8', 8]]) {
      const batch = async () => {
        expected += burst * FANOUT;
        s.send({ type: 'expect', total: expected, timeoutMs: 60_000 });
        server.send({ type: 'broadcast', count: 1, burst });
        const got = await s.next('got');
        if (got.timedOut) throw new Error(`${shape}: not every frame arrived (${got.frames} of ${expected})`);
      };
      for (let w = 0; w < 3; w++) await batch();
      const batches = Math.max(3, Math.ceil(DELIVERIES / (FANOUT * burst)));
      const before = await cpu();
      for (let b = 0; b < batches; b++) await batch();
      results[name] = (FANOUT * burst * batches) / ((await cpu()) - before);
    }
  } finally {
    await close(s);
    server.kill();
  }
  return results;
}

/** A backend that allows every subscribe, counting the questions. */
function startBackend() {
  const http = require('node:http');
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    req.resume();
    req.on('end', () => res.end('{"allow":true}'));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}/subscribe`, requests: () => requests, close: () => server.close() })));
}

/** Subscribe round trips on /ws, `any` (feed:) and `proxy` (vip:) interleaved, one at a time. */
async function proxyCost() {
  const WebSocket = require('ws');
  const backend = await startBackend();
  const server = await startServer('gateway', '', 0, { CHANNELS_FILE: proxyChannelsFile, SUBSCRIBE_PROXY_URL: backend.url, PROXY_SECRET: 'bench-proxy-secret', RATE_LIMIT_PER_SEC: '1000000', RATE_LIMIT_BURST: '1000000' });
  const token = jwt.sign({ sub: 'proxy-bench', role: 'user' }, SECRET, { expiresIn: 3600 });
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`, ['bearer', token]);
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const waiting = new Map();
  ws.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    // One client frame at a time: any answer without a channel (rate_limited, invalid_message) is a failure.
    if (frame.type === 'error' && !frame.payload.channel) throw new Error(`proxy bench: ${JSON.stringify(frame)}`);
    const done = waiting.get(frame.channel ?? frame.payload?.channel);
    if (done && (frame.type === 'subscribed' || frame.type === 'error' || frame.type === 'unsubscribed')) (waiting.delete(frame.channel), done(frame));
  });
  const roundTrip = (frame) => new Promise((resolve) => (waiting.set(frame.channel, resolve), ws.send(JSON.stringify(frame))));
  const times = { any: [], proxy: [], backend: [] };
  const before = backend.requests();
  try {
    for (let i = 0; i < PROXY_SUBSCRIBES; i++) {
      for (const [kind, channel] of [['any', `feed:p-${i}`], ['proxy', `vip:p-${i}`]]) {
        const t0 = process.hrtime.bigint();
        const answer = await roundTrip({ type: 'subscribe', channel });
        times[kind].push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (answer.type !== 'subscribed') throw new Error(`${channel}: ${JSON.stringify(answer)}`);
        await roundTrip({ type: 'unsubscribe', channel });
      }
      const t0 = process.hrtime.bigint();
      await fetch(backend.url, { method: 'POST', body: '{}' }).then((r) => r.text());
      times.backend.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return { ...times, perSubscribe: (backend.requests() - before - PROXY_SUBSCRIBES) / PROXY_SUBSCRIBES };
  } finally {
    ws.terminate();
    server.kill();
    backend.close();
  }
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fmt = (xs, digits, unit = '') => {
  const m = median(xs).toFixed(digits);
  return xs.length > 1 ? `${m}${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})` : `${m}${unit}`;
};
const ratio = (a, b) => (median(a) / median(b)).toFixed(2);

async function main() {
  const started = Date.now();
  console.error(`bench:ws: ${ROUNDS} round(s); idle ${IDLE} connections; fan-out to ${FANOUT}; every connection its own user`);
  const idleTokens = tokensFile(IDLE, 'authority');
  const fanTokens = tokensFile(FANOUT, 'authority');
  const mem = { path: [], ws1: [], ws10: [] };
  const fan = { path: [], ws1: [] };
  const fanoutOnly = args.has('--fanout');
  for (let r = 1; r <= ROUNDS; r++) {
    for (const shape of fanoutOnly ? [] : ['path', 'ws1', 'ws10']) {
      process.stderr.write(`  round ${r}/${ROUNDS} idle ${shape}… `);
      const res = await idle(shape, idleTokens);
      mem[shape].push(res);
      console.error(`${(res.rss / 1024).toFixed(2)} KB RSS, ${(res.heap / 1024).toFixed(2)} KB heap per connection`);
    }
    for (const shape of ['path', 'ws1']) {
      process.stderr.write(`  round ${r}/${ROUNDS} fan-out ${shape}… `);
      const res = await fanout(shape, fanTokens);
      fan[shape].push(res);
      console.error(`${Math.round(res.single / 1000)}k single, ${Math.round(res.burst8 / 1000)}k burst8 per CPU-s`);
    }
  }
  if (fanoutOnly) {
    for (const mode of ['single', 'burst8']) console.log(`${mode}: path ${fmt(fan.path.map((x) => x[mode] / 1000), 0, 'k')}, /ws ${fmt(fan.ws1.map((x) => x[mode] / 1000), 0, 'k')}, /ws ÷ path ${ratio(fan.ws1.map((x) => x[mode]), fan.path.map((x) => x[mode]))}`);
    return;
  }
  process.stderr.write(`  subscribe proxy, ${PROXY_SUBSCRIBES} subscribes each… `);
  const proxy = await proxyCost();
  console.error(`any ${median(proxy.any).toFixed(3)} ms, proxy ${median(proxy.proxy).toFixed(3)} ms, backend ${median(proxy.backend).toFixed(3)} ms, ${proxy.perSubscribe.toFixed(2)} requests per subscribe`);
  const kb = (shape, key) => mem[shape].map((x) => x[key] / 1024);
  const memTable = [
    `| per connection at ${IDLE.toLocaleString('en')}, after GC | path (alerts + user:<sub>) | /ws, 1 channel | /ws, 10 channels | /ws 10 ÷ /ws 1 | /ws 10 ÷ path |`,
    '|---|---|---|---|---|---|',
    ...['rss', 'heap'].map((key) => `| ${key === 'rss' ? 'RSS' : 'heap'} | ${fmt(kb('path', key), 2, ' KB')} | ${fmt(kb('ws1', key), 2, ' KB')} | ${fmt(kb('ws10', key), 2, ' KB')} | ${ratio(kb('ws10', key), kb('ws1', key))} | ${ratio(kb('ws10', key), kb('path', key))} |`),
  ].join('\n');
  const per = (shape, mode) => fan[shape].map((x) => x[mode] / 1000);
  const fanTable = [
    `| deliveries per server CPU-second, ~1 KB alerts to ${FANOUT.toLocaleString('en')} | path endpoint | /ws | /ws ÷ path |`,
    '|---|---|---|---|',
    ...['single', 'burst8'].map((mode) => `| ${mode === 'single' ? 'single broadcasts' : 'bursts of 8'} | ${fmt(per('path', mode), 0, 'k')} | ${fmt(per('ws1', mode), 0, 'k')} | ${ratio(per('ws1', mode), per('path', mode))} |`),
  ].join('\n');
  const machine = `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)].toFixed(3);
  const proxyTable = [
    `| /ws subscribe round trip, ${PROXY_SUBSCRIBES} each, one at a time | p50 | p99 |`,
    '|---|---|---|',
    `| \`any\` namespace (\`feed:\`) | ${q(proxy.any, 0.5)} ms | ${q(proxy.any, 0.99)} ms |`,
    `| \`proxy\` namespace (\`vip:\`), the backend allows | ${q(proxy.proxy, 0.5)} ms | ${q(proxy.proxy, 0.99)} ms |`,
    `| the proxy's extra (p50 difference) against one backend round trip (POST from this process) | ${(median(proxy.proxy) - median(proxy.any)).toFixed(3)} ms | backend alone: ${q(proxy.backend, 0.5)} ms p50 |`,
    `| backend requests per proxy subscribe | ${proxy.perSubscribe.toFixed(2)} | |`,
  ].join('\n');
  const report = `${memTable}\n\n${fanTable}\n\n${proxyTable}`;
  console.log(`\n${report}\n\nmachine: ${machine}; ${ROUNDS} round(s); ${minutes} min`);
  if (args.has('--write')) {
    const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
    const text = readFileSync(doc, 'utf8');
    const block = `<!-- bench-ws:start -->\nCommand: \`${process.env.BENCH_ROUNDS ? `BENCH_ROUNDS=${process.env.BENCH_ROUNDS} ` : ''}npm run bench:ws${quick ? ' -- --quick' : ''} -- --write\` · ${new Date().toISOString().slice(0, 10)} · ${machine} · ${ROUNDS} interleaved round(s), ${minutes} min\n\n${report}\n<!-- bench-ws:end -->`;
    if (!text.includes('<!-- bench-ws:start -->')) throw new Error('docs/benchmarks.md has no <!-- bench-ws:start --> … <!-- bench-ws:end --> block to write into');
    writeFileSync(doc, text.replace(/<!-- bench-ws:start -->[\s\S]*<!-- bench-ws:end -->/, block));
    console.error(`bench:ws: wrote ${doc}`);
  }
}

runPinned(1);
main().then(
  () => process.exit(0),
  (error) => {
    console.error(`bench:ws: ${error.message}`);
    process.exit(1);
  },
);
