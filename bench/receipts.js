#!/usr/bin/env node
// npm run bench:receipts [-- --quick] [-- <rounds>] [-- --write]; part of `npm run bench`.
// What receipts cost (issue 25, SPEC v3 "Receipts and offline delivery"):
// - Fan-out: deliveries per server CPU-second of ~1 KB alerts to 1,000 subscribers on the alerts endpoint, every
//   connection its own user (u-0 … u-999) and every alert targeted at those 1,000 `users`, without `ack` and with
//   `"ack": {"within_s": 3600}` (so every delivery is recorded: one store write per alert per event-loop turn,
//   never per socket), embedded (memory) and in cluster mode (Redis), single broadcasts and bursts of 8, closed
//   loop as bench/fanout.js. Target: with ack at least 0.9x without. Off and on alternate within each round (and
//   which goes first alternates between rounds); the cluster server's CPU counts, Redis's does not.
// - Redis bytes per alert receipt at 1,000 recipients: one alert with ack to those 1,000 users, delivered to all
//   (what the gateway wrote), then acked by all (written as the gateway's ack script writes each ack: HSETNX of
//   the user's first time in the alert's `acked` hash), read with MEMORY USAGE (SAMPLES 0: every field counted).
// The gateway on core 0; the sink (bench/load/sink.js, raw TCP) and this script on core 1.
'use strict';
const { cpus, totalmem, tmpdir } = require('node:os');
const { mkdtempSync, writeFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { spawn } = require('node:child_process');
const jwt = require('jsonwebtoken');
const Redis = require('ioredis');
const { startServer, startRedis, runPinned, SECRET } = require('./fanout');

const SUBSCRIBERS = 1000;
const WITHIN_S = 3600;
const TARGET = 0.9;

function tokensFile(count) {
  const file = join(mkdtempSync(join(tmpdir(), 'rt-receipts-')), `tokens-${count}.json`);
  writeFileSync(file, JSON.stringify(Array.from({ length: count }, (_, i) => jwt.sign({ sub: `u-${i}`, role: 'authority' }, SECRET, { expiresIn: 3600 }))));
  return file;
}

/** The counting sink on core 1: `count` alerts-endpoint sockets, one user each. */
function sink(port, count, tokens) {
  const argv = [join(__dirname, 'load', 'sink.js'), `ws://127.0.0.1:${port}/api/alerts/subscribe?token=TOKEN`, String(count), 'welcome'];
  const [cmd, rest] = process.platform === 'linux' ? ['taskset', ['-c', '1', process.execPath, ...argv]] : [process.execPath, argv];
  const proc = spawn(cmd, rest, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, SINK_TOKENS: tokens } });
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

async function dial(s) {
  await s.next('ready');
  s.send({ type: 'dial' });
  const dialed = await s.next('dialed');
  if (dialed.failed) throw new Error(`${dialed.failed} connections failed to open`);
}

async function close(s) {
  s.send({ type: 'close' });
  await s.next('closed').catch(() => undefined);
}

/** Deliveries per server CPU-second, single broadcasts then bursts of 8. */
async function fanout({ peer, ack, redisUrl, tokens, deliveries, subscribers = SUBSCRIBERS }) {
  const SUBSCRIBERS = subscribers;
  const env = { BENCH_ALERT_USERS: String(SUBSCRIBERS), ...(ack ? { BENCH_ALERT_ACK: String(WITHIN_S) } : {}) };
  const server = await startServer(peer, redisUrl, 0, env);
  const s = sink(server.port, SUBSCRIBERS, tokens);
  const results = {};
  let expected = 0;
  const cpu = async () => {
    server.send({ type: 'cpu' });
    const { cpu: c } = await server.next('cpu');
    return (c.user + c.system) / 1e6;
  };
  try {
    await dial(s);
    for (const [name, burst] of [['single', 1], ['burst8', 8]]) {
      const batch = async () => {
        expected += burst * SUBSCRIBERS;
        s.send({ type: 'expect', total: expected, timeoutMs: 60_000 });
        server.send({ type: 'broadcast', count: 1, burst });
        const got = await s.next('got');
        if (got.timedOut || got.frames !== expected) throw new Error(`${peer}${ack ? ' with ack' : ''}: ${got.frames} frames counted, ${expected} sent`);
      };
      for (let w = 0; w < 3; w++) await batch();
      const batches = Math.max(3, Math.ceil(deliveries / (SUBSCRIBERS * burst)));
      const before = await cpu();
      for (let b = 0; b < batches; b++) await batch();
      results[name] = (SUBSCRIBERS * burst * batches) / ((await cpu()) - before);
    }
  } finally {
    await close(s);
    server.kill();
  }
  return results;
}

/** Redis bytes of one alert's receipt at 1,000 recipients: delivered to all, then acked by all. */
async function receiptBytes(redisUrl, tokens, SUBSCRIBERS) {
  const redis = new Redis(redisUrl);
  // A prefix of its own: this one alert's keys, whatever else the Redis holds.
  const prefix = `receipts-bench-${process.pid}`;
  const server = await startServer('gateway-cluster', redisUrl, 0, { BENCH_ALERT_USERS: String(SUBSCRIBERS), BENCH_ALERT_ACK: String(WITHIN_S), REDIS_PREFIX: prefix });
  const s = sink(server.port, SUBSCRIBERS, tokens);
  try {
    await dial(s);
    s.send({ type: 'expect', total: SUBSCRIBERS, timeoutMs: 60_000 });
    server.send({ type: 'broadcast', count: 1, burst: 1 });
    const got = await s.next('got');
    if (got.timedOut) throw new Error('the alert did not reach every subscriber');
    const [alert] = await redis.zrange(`{${prefix}}:receipts`, 0, 0);
    const meta = `{${prefix}}:receipt:${alert}`;
    for (let i = 0; i < 200 && (await redis.hlen(`${meta}:delivered`)) < SUBSCRIBERS; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const usage = async (key) => Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
    const description = await usage(meta);
    const delivered = await usage(`${meta}:delivered`);
    // Every user acks: each ack is one HSETNX of that user's first time, as the ack script writes it.
    const now = Date.now();
    const pipeline = redis.pipeline();
    for (let i = 0; i < SUBSCRIBERS; i++) pipeline.hsetnx(`${meta}:acked`, `u-${i}`, String(now + i));
    await pipeline.exec();
    const acked = await usage(`${meta}:acked`);
    // The index and deadline entries of one alert (zset members of a few dozen bytes).
    const index = await usage(`{${prefix}}:receipts`);
    const due = await usage(`{${prefix}}:receipts:due`);
    return { recipients: SUBSCRIBERS, delivered: await redis.hlen(`${meta}:delivered`), description, deliveredBytes: delivered, ackedBytes: acked, index, due };
  } finally {
    await close(s);
    server.kill();
    redis.disconnect();
  }
}

async function measureReceipts({ rounds = 3, quick = false, redisUrl, subscribers = SUBSCRIBERS, deliveries = quick ? 100_000 : 200_000 } = {}) {
  const tokens = tokensFile(subscribers);
  const redis = redisUrl ? undefined : await startRedis();
  const url = redisUrl ?? redis.url;
  const result = { subscribers, withinS: WITHIN_S, deliveries, rounds: [] };
  try {
    for (let r = 1; r <= rounds; r++) {
      const round = {};
      for (const peer of ['gateway', 'gateway-cluster']) {
        const order = r % 2 ? [false, true] : [true, false];
        const runs = {};
        for (const ack of order) {
          process.stderr.write(`  round ${r}/${rounds} receipts: ${peer} ${ack ? 'with' : 'without'} ack… `);
          runs[ack ? 'on' : 'off'] = await fanout({ peer, ack, redisUrl: url, tokens, deliveries, subscribers });
          console.error(`${Math.round(runs[ack ? 'on' : 'off'].single / 1000)}k single, ${Math.round(runs[ack ? 'on' : 'off'].burst8 / 1000)}k burst8 per CPU-s`);
        }
        round[peer] = runs;
      }
      result.rounds.push(round);
    }
    process.stderr.write(`  receipts: Redis bytes of one alert at ${subscribers} recipients… `);
    result.bytes = await receiptBytes(url, tokens, subscribers);
    console.error(`${result.bytes.description + result.bytes.deliveredBytes + result.bytes.ackedBytes} bytes`);
  } finally {
    redis?.proc.kill('SIGKILL');
  }
  return result;
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fmt = (xs, digits = 0, unit = '') => {
  const m = median(xs).toFixed(digits);
  return xs.length > 1 ? `${m}${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})` : `${m}${unit}`;
};

function receiptsTable(result) {
  const k = (xs) => fmt(xs.map((x) => x / 1000), 0, 'k');
  const rows = [];
  for (const [peer, label] of [['gateway', 'embedded G (memory)'], ['gateway-cluster', 'Gc (cluster, Redis)']]) {
    for (const [mode, what] of [['single', 'single broadcasts'], ['burst8', 'bursts of 8']]) {
      const off = result.rounds.map((r) => r[peer].off[mode]);
      const on = result.rounds.map((r) => r[peer].on[mode]);
      const perRound = result.rounds.map((r) => r[peer].on[mode] / r[peer].off[mode]);
      rows.push(`| ${label}, ${what} | ${k(off)} | ${k(on)} | **${(median(on) / median(off)).toFixed(2)}** | ${fmt(perRound, 2)} |`);
    }
  }
  const b = result.bytes;
  const total = b.description + b.deliveredBytes + b.ackedBytes;
  return [
    `| alerts to ${result.subscribers.toLocaleString('en')} users (one socket each), ~1 KB, ${result.rounds.length} interleaved round(s): deliveries per server CPU-second | without ack | with ack (${result.withinS} s) | with/without (medians) | per round |`,
    '|---|---|---|---|---|',
    ...rows,
    '',
    `| Redis bytes of one alert's receipt, ${b.recipients.toLocaleString('en')} recipients, all delivered and acked (MEMORY USAGE, SAMPLES 0) | bytes | per recipient |`,
    '|---|---|---|',
    `| description (\`{rt}:receipt:<id>\`: the ${b.recipients.toLocaleString('en')} targeted users, within_s, data, …) | ${b.description.toLocaleString('en')} | ${(b.description / b.recipients).toFixed(1)} |`,
    `| delivered (\`…:delivered\`, user → ms) | ${b.deliveredBytes.toLocaleString('en')} | ${(b.deliveredBytes / b.recipients).toFixed(1)} |`,
    `| acked (\`…:acked\`, user → ms) | ${b.ackedBytes.toLocaleString('en')} | ${(b.ackedBytes / b.recipients).toFixed(1)} |`,
    `| **the alert's receipt** | **${total.toLocaleString('en')}** | **${(total / b.recipients).toFixed(1)}** |`,
  ].join('\n');
}

function writeRecord(result, command) {
  const date = new Date().toISOString().slice(0, 10);
  const machine = `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const json = join(__dirname, '..', 'docs', 'bench-results.json');
  const recorded = JSON.parse(readFileSync(json, 'utf8'));
  recorded.receipts = { ...result, command, date, machine };
  writeFileSync(json, `${JSON.stringify(recorded, null, 1)}\n`);
  const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
  const block = `<!-- receipts:start -->\nCommand: \`${command}\` · ${date} · ${machine}\n\n${receiptsTable(result)}\n<!-- receipts:end -->`;
  writeFileSync(doc, readFileSync(doc, 'utf8').replace(/<!-- receipts:start -->[\s\S]*<!-- receipts:end -->/, block));
  console.error(`receipts: wrote ${doc} and the receipts figures of ${json}`);
}

module.exports = { measureReceipts, receiptsTable, writeRecord, fanout, tokensFile, TARGET };

if (require.main === module) {
  runPinned();
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? (quick ? 1 : 3));
  measureReceipts({ rounds, quick }).then(
    (result) => {
      console.log(`\n${receiptsTable(result)}`);
      if (args.includes('--write')) writeRecord(result, `npm run bench:receipts -- ${rounds}${quick ? ' --quick' : ''} --write`);
      process.exit(0);
    },
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
