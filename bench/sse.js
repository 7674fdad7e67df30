#!/usr/bin/env node
// npm run bench:sse [-- --quick] [-- --write] [-- --fanout (the fan-out rows only)]; part of `npm run bench`.
// What the same channel costs over Server-Sent Events against WebSocket (issue 24, SPEC v3 "Reach without
// WebSocket"): `GET /sse?channel=alerts` against `/ws` subscribed to `alerts`, the same publications (alerts of
// ~1 KB through AlertsService), the gateway at its default log level, every connection its own user and token.
// - Fan-out: deliveries per server CPU-second to 1,000 subscribers (embedded mode, process.cpuUsage() of the
//   gateway over the batches, single broadcasts and bursts of 8, closed loop as bench/fanout.js). Target: SSE
//   at least 0.8x WebSocket.
// - Idle memory per connection after two forced GCs (embedded mode, a fresh server per measure). Target: SSE
//   RSS at most 1.5x WebSocket.
// - Publish -> delivery latency, bench/cluster-latency.js's method: two replicas in cluster mode on one Redis,
//   10 subscribers on replica B, alerts POSTed to replica A at a fixed open-loop rate. Target: SSE p99 within
//   1.5x WebSocket's.
// The load side is bench/load/sink.js on core 1 (raw TCP; for SSE it counts `data:` lines with a native indexOf,
// cheaper than any server); the gateway on core 0. The transports alternate within each round (and which goes
// first alternates between rounds); medians with min-max, ratios of medians and per round.
'use strict';
const { cpus, totalmem, tmpdir } = require('node:os');
const { mkdtempSync, writeFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { spawn } = require('node:child_process');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const jwt = require('jsonwebtoken');
const { startServer, startRedis, runPinned, SECRET } = require('./fanout');
const { measureLatency } = require('./cluster-latency');

const TRANSPORTS = ['ws', 'sse'];
const LABEL = { ws: 'WebSocket (`/ws`)', sse: 'SSE (`/sse`)' };
const TARGETS = { fanout: 0.8, rss: 1.5, p99: 1.5 };

function defaults(quick) {
  return {
    rounds: Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 3),
    idle: quick ? 1000 : 5000,
    subscribers: 1000,
    deliveries: quick ? 50_000 : 200_000,
    latency: { rate: 1000, seconds: quick ? 2 : 5, subscribers: 10 },
  };
}

/** One token per connection: production's shape (per-user state is part of the cost). */
function tokensFile(dir, count) {
  const file = join(dir, `tokens-${count}.json`);
  const tokens = Array.from({ length: count }, (_, i) => jwt.sign({ sub: `u-${i}`, role: 'authority' }, SECRET, { expiresIn: 3600 }));
  writeFileSync(file, JSON.stringify(tokens));
  return file;
}

/** The counting sink on core 1: `/ws` sockets that subscribe to `alerts`, or `/sse?channel=alerts` streams. */
function sink(port, transport, count, tokens) {
  const argv =
    transport === 'sse'
      ? [join(__dirname, 'load', 'sink.js'), `http://127.0.0.1:${port}/sse?channel=alerts`, String(count), 'sse']
      : [join(__dirname, 'load', 'sink.js'), `ws://127.0.0.1:${port}/ws?token=TOKEN`, String(count), 'subscribe'];
  const [cmd, rest] = process.platform === 'linux' ? ['taskset', ['-c', '1', process.execPath, ...argv]] : [process.execPath, argv];
  const proc = spawn(cmd, rest, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, SINK_TOKENS: tokens, SINK_SUBSCRIBE: 'alerts' } });
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
  if (dialed.failed) throw new Error(`${what}: ${dialed.failed} connections failed to open`);
}

async function close(s) {
  s.send({ type: 'close' });
  await s.next('closed').catch(() => undefined);
}

/** Memory per connection after GC: a fresh server, `count` connections opened, read before and after. */
async function idle(transport, count, tokens) {
  const server = await startServer('gateway', '');
  try {
    server.send({ type: 'memory' });
    const before = await server.next('memory');
    const s = sink(server.port, transport, count, tokens);
    await dial(s, transport);
    server.send({ type: 'memory' });
    const after = await server.next('memory');
    await close(s);
    return { rss: (after.rss - before.rss) / count, heap: (after.heapUsed - before.heapUsed) / count };
  } finally {
    server.kill();
  }
}

/** Deliveries per server CPU-second to `subscribers`, single broadcasts then bursts of 8. */
async function fanout(transport, subscribers, deliveries, tokens) {
  const server = await startServer('gateway', '');
  const s = sink(server.port, transport, subscribers, tokens);
  const results = {};
  let expected = 0;
  const cpu = async () => {
    server.send({ type: 'cpu' });
    const { cpu: c } = await server.next('cpu');
    return (c.user + c.system) / 1e6;
  };
  try {
    await dial(s, transport);
    for (const [name, burst] of [['single', 1], ['burst8', 8]]) {
      // One broadcast (or burst) per batch; the next starts when every frame of this one arrived.
      const batch = async () => {
        expected += burst * subscribers;
        s.send({ type: 'expect', total: expected, timeoutMs: 60_000 });
        server.send({ type: 'broadcast', count: 1, burst });
        const got = await s.next('got');
        // Exactly: a sink that counted anything else (a heartbeat, a welcome) would end batches early.
        if (got.timedOut || got.frames !== expected) throw new Error(`${transport}: ${got.frames} frames counted, ${expected} sent`);
      };
      for (let w = 0; w < 3; w++) await batch();
      const batches = Math.max(3, Math.ceil(deliveries / (subscribers * burst)));
      const before = await cpu();
      for (let b = 0; b < batches; b++) await batch();
      results[name] = (subscribers * burst * batches) / ((await cpu()) - before);
    }
  } finally {
    await close(s);
    server.kill();
  }
  return results;
}

/**
 * Every row, in interleaved rounds. `only`: a subset of 'idle', 'fanout', 'latency'. `redisUrl`: a running
 * redis-server for the latency rows (one is started otherwise).
 */
async function measureSse(options = {}) {
  const quick = options.quick ?? false;
  const o = { ...defaults(quick), ...options };
  const only = new Set(o.only ?? ['idle', 'fanout', 'latency']);
  const dir = mkdtempSync(join(tmpdir(), 'rt-bench-sse-'));
  const idleTokens = only.has('idle') ? tokensFile(dir, o.idle) : undefined;
  const fanTokens = only.has('fanout') ? tokensFile(dir, o.subscribers) : undefined;
  let redis;
  let redisUrl = o.redisUrl;
  if (only.has('latency') && !redisUrl) {
    redis = await startRedis();
    redisUrl = redis.url;
  }
  const result = { idle: o.idle, subscribers: o.subscribers, latencyRate: o.latency.rate, latencySeconds: o.latency.seconds, latencySubscribers: o.latency.subscribers, rounds: [] };
  try {
    for (let r = 1; r <= o.rounds; r++) {
      const order = r % 2 ? TRANSPORTS : [...TRANSPORTS].reverse();
      const round = {};
      for (const transport of order) {
        const row = (round[transport] = {});
        if (only.has('idle')) {
          process.stderr.write(`  round ${r}/${o.rounds} sse: idle ${transport} × ${o.idle}… `);
          Object.assign(row, await idle(transport, o.idle, idleTokens));
          console.error(`${(row.rss / 1024).toFixed(2)} KB RSS, ${(row.heap / 1024).toFixed(2)} KB heap per connection`);
        }
        if (only.has('fanout')) {
          process.stderr.write(`  round ${r}/${o.rounds} sse: fan-out ${transport} × ${o.subscribers}… `);
          const f = await fanout(transport, o.subscribers, o.deliveries, fanTokens);
          row.single = f.single;
          row.burst8 = f.burst8;
          console.error(`${Math.round(f.single / 1000)}k single, ${Math.round(f.burst8 / 1000)}k burst8 per CPU-s`);
        }
      }
      if (only.has('latency')) {
        for (const transport of order) {
          process.stderr.write(`  round ${r}/${o.rounds} sse: latency ${transport} ${o.latency.rate}/s… `);
          // The subscribers and the publisher live in this process: a stall of its core (the host's steal time)
          // delays every delivery it reads. Its worst event-loop delay is kept beside each p99 to tell those apart.
          const stalls = monitorEventLoopDelay({ resolution: 5 });
          stalls.enable();
          const res = await measureLatency({ peer: 'gateway', transport: transport === 'sse' ? 'sse' : 'ws-channel', ...o.latency, redisUrl });
          stalls.disable();
          if (res.deliveries < res.expected) throw new Error(`latency ${transport}: ${res.deliveries} of ${res.expected} delivered`);
          const runnerStall = stalls.max / 1e6;
          Object.assign(round[transport], { p50: res.p50, p99: res.p99, p999: res.p999, deliveries: res.deliveries, expected: res.expected, runnerStall });
          console.error(`p50 ${res.p50.toFixed(2)} ms, p99 ${res.p99.toFixed(2)} ms (the runner's worst event-loop delay ${runnerStall.toFixed(1)} ms)`);
        }
      }
      result.rounds.push(round);
    }
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
const fmt = (xs, digits, unit = '') => {
  const m = median(xs).toFixed(digits);
  return xs.length > 1 ? `${m}${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})` : `${m}${unit}`;
};

/** SSE ÷ WebSocket for `key`: the ratio of the medians, and per round (the pairs saw the same machine). */
function ratios(result, key) {
  const col = (t) => result.rounds.map((r) => r[t][key]);
  const perRound = result.rounds.map((r) => r.sse[key] / r.ws[key]);
  return { median: median(col('sse')) / median(col('ws')), perRound };
}

/** Whether each target is met (by the ratio of the medians), for the table and the harness test. */
function verdicts(result) {
  const has = (key) => result.rounds.length > 0 && result.rounds[0].ws[key] !== undefined;
  const out = {};
  if (has('single')) {
    out.fanoutSingle = ratios(result, 'single').median >= TARGETS.fanout;
    out.fanoutBurst = ratios(result, 'burst8').median >= TARGETS.fanout;
  }
  if (has('rss')) out.rss = ratios(result, 'rss').median <= TARGETS.rss;
  if (has('p99')) out.p99 = ratios(result, 'p99').median <= TARGETS.p99;
  return out;
}

function sseTable(result) {
  const has = (key) => result.rounds.length > 0 && result.rounds[0].ws[key] !== undefined;
  const col = (t, key, scale = 1) => result.rounds.map((r) => r[t][key] / scale);
  const ratioCell = (key) => {
    const { median: m, perRound } = ratios(result, key);
    return `${m.toFixed(2)}${perRound.length > 1 ? ` (rounds ${perRound.map((x) => x.toFixed(2)).join(', ')})` : ''}`;
  };
  const met = (ok) => (ok ? 'met' : '**not met**');
  const v = verdicts(result);
  const rows = [];
  if (has('single')) {
    rows.push(`| deliveries per server CPU-second, ~1 KB alerts to ${result.subscribers.toLocaleString('en')}, single broadcasts | ${fmt(col('ws', 'single', 1000), 0, 'k')} | ${fmt(col('sse', 'single', 1000), 0, 'k')} | ${ratioCell('single')} | ≥ ${TARGETS.fanout}: ${met(v.fanoutSingle)} |`);
    rows.push(`| the same, bursts of 8 | ${fmt(col('ws', 'burst8', 1000), 0, 'k')} | ${fmt(col('sse', 'burst8', 1000), 0, 'k')} | ${ratioCell('burst8')} | ≥ ${TARGETS.fanout}: ${met(v.fanoutBurst)} |`);
  }
  if (has('rss')) {
    rows.push(`| idle RSS per connection at ${result.idle.toLocaleString('en')}, after GC | ${fmt(col('ws', 'rss', 1024), 2, ' KB')} | ${fmt(col('sse', 'rss', 1024), 2, ' KB')} | ${ratioCell('rss')} | ≤ ${TARGETS.rss}: ${met(v.rss)} |`);
    rows.push(`| idle heap per connection, after GC | ${fmt(col('ws', 'heap', 1024), 2, ' KB')} | ${fmt(col('sse', 'heap', 1024), 2, ' KB')} | ${ratioCell('heap')} | |`);
  }
  if (has('p99')) {
    const lat = (t) => `${fmt(col(t, 'p50'), 2, ' ms')} / ${fmt(col(t, 'p99'), 2, ' ms')}`;
    const delivered = (t) => `${result.rounds.reduce((n, r) => n + r[t].deliveries, 0)}/${result.rounds.reduce((n, r) => n + r[t].expected, 0)}`;
    rows.push(`| publish → delivery p50 / p99, ${result.latencyRate.toLocaleString('en')}/s for ${result.latencySeconds} s, 2 replicas on Redis, ${result.latencySubscribers} subscribers on the other replica (delivered: WS ${delivered('ws')}, SSE ${delivered('sse')}) | ${lat('ws')} | ${lat('sse')} | p99: ${ratioCell('p99')} | ≤ ${TARGETS.p99}: ${met(v.p99)} |`);
    if (has('runnerStall')) rows.push(`| the load process's worst event-loop delay during each latency measure (its core stalled: every delivery it reads waits) | ${fmt(col('ws', 'runnerStall'), 1, ' ms')} | ${fmt(col('sse', 'runnerStall'), 1, ' ms')} | | |`);
  }
  return [
    `| the \`alerts\` channel over SSE against WebSocket, gateway at its default log level, every connection its own user, ${result.rounds.length} interleaved round(s) | ${LABEL.ws} | ${LABEL.sse} | SSE ÷ WS (medians; per round) | target |`,
    '|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

const machine = () => `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;

function writeRecord(result, command, minutes) {
  const date = new Date().toISOString().slice(0, 10);
  const json = join(__dirname, '..', 'docs', 'bench-results.json');
  const recorded = JSON.parse(readFileSync(json, 'utf8'));
  recorded.sse = { ...result, command, date, machine: machine() };
  writeFileSync(json, `${JSON.stringify(recorded, null, 1)}\n`);
  const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
  const text = readFileSync(doc, 'utf8');
  if (!text.includes('<!-- sse:start -->')) throw new Error('docs/benchmarks.md has no <!-- sse:start --> … <!-- sse:end --> block to write into');
  const block = `<!-- sse:start -->\nCommand: \`${command}\` · ${date} · ${machine()}${minutes ? ` · ${minutes} min` : ''}\n\n${sseTable(result)}\n<!-- sse:end -->`;
  writeFileSync(doc, text.replace(/<!-- sse:start -->[\s\S]*<!-- sse:end -->/, block));
  console.error(`bench:sse: wrote ${doc} and the SSE figures of ${json}`);
}

module.exports = { measureSse, sseTable, verdicts, writeRecord, TARGETS };

if (require.main === module) {
  runPinned(1);
  const args = new Set(process.argv.slice(2));
  const quick = args.has('--quick');
  const started = Date.now();
  const only = args.has('--fanout') ? ['fanout'] : args.has('--idle') ? ['idle'] : args.has('--latency') ? ['latency'] : undefined;
  console.error(`bench:sse: SSE against WebSocket on the alerts channel${only ? ` (${only.join(', ')} only)` : ''}; server on core 0, load on core 1`);
  measureSse({ quick, only }).then(
    (result) => {
      const minutes = ((Date.now() - started) / 60000).toFixed(1);
      console.log(`\n${sseTable(result)}\n\nmachine: ${machine()}; ${result.rounds.length} round(s); ${minutes} min`);
      if (args.has('--write')) {
        if (only) throw new Error('--write records every row: run without --fanout/--idle/--latency');
        const env = process.env.BENCH_ROUNDS ? `BENCH_ROUNDS=${process.env.BENCH_ROUNDS} ` : '';
        writeRecord(result, `${env}npm run bench:sse --${quick ? ' --quick' : ''} --write`, minutes);
      }
      process.exit(0);
    },
    (error) => {
      console.error(`bench:sse: ${error.stack ?? error.message}`);
      process.exit(1);
    },
  );
}
