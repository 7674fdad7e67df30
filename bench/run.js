#!/usr/bin/env node
// npm run bench [-- --quick] [-- --write] [-- --one-user]
// The gateway (G, embedded; Gc, cluster mode on one Redis) against bare `ws` (W: serialise once, one write per
// message per socket; W8: the same with a burst's writes coalesced per socket) and Socket.IO 4.8 with the
// Redis adapter (S), in interleaved rounds (W G S W G S ...). Servers are pinned to core 0, load to core 1.
// Also the gateway's own sections: webhooks (bench/webhooks.js), receipts (bench/receipts.js), SSE against WebSocket (bench/sse.js) and the
// Redis topologies (bench/topologies.js).
// Medians with min–max; --write records the run in docs/benchmarks.md and renders the charts (bench/charts.js).
// Every gateway socket is its own user with its own token, the gateway at its default log level (issue 26);
// --one-user connects one user N times, the shape of the figures recorded before, for comparison.
'use strict';
const { cpus, totalmem } = require('node:os');
const { writeFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const jwt = require('jsonwebtoken');
const { measureFanout, startServer, startSink, runPinned, startRedis } = require('./fanout');
const { measureLatency } = require('./cluster-latency');
const { measureSlowConsumer } = require('./slow-consumer');

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const ONE_USER = args.has('--one-user');
const ROUNDS = quick ? 1 : 3;
const IDLE_SOCKETS = quick ? 2000 : 10_000;
const FANOUT_SIZES = quick ? [1000] : [1000, 10_000];
const FANOUT_DELIVERIES = quick ? 100_000 : 300_000;
const LATENCY = quick ? [{ rate: 1000, seconds: 3 }] : [{ rate: 1000, seconds: 5 }, { rate: 3000, seconds: 5 }, { rate: 5000, seconds: 5 }];
const SECRET = 'bench-secret-bench-secret-bench-secret!!';

async function untilClosed(server) {
  for (;;) {
    server.send({ type: 'open' });
    if ((await server.next('open')).count === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20)); // poll: the server sees the resets soon after
  }
}

/** Server CPU and wall time for one sink to open `count` sockets. */
async function dialMeasured(peer, server, count) {
  const sink = await startSink(peer, server.port, count, { oneUser: ONE_USER });
  server.send({ type: 'cpu' });
  const before = (await server.next('cpu')).cpu;
  const t0 = process.hrtime.bigint();
  await sink.dial();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  server.send({ type: 'cpu' });
  const after = (await server.next('cpu')).cpu;
  const cpuSeconds = (after.user + after.system - before.user - before.system) / 1e6;
  return { sink, perSec: count / seconds, perCpuSec: count / cpuSeconds };
}

/**
 * Idle memory per socket after GC on a fresh server with IDLE_SOCKETS open; then, once those are closed, the
 * upgrade rate and server CPU per upgrade of a second IDLE_SOCKETS (a running server's cost). The first dial's
 * figures are kept too: a fresh process pays for its JIT warm-up.
 */
async function idle(peer, redisUrl) {
  const server = await startServer(peer, redisUrl);
  try {
    server.send({ type: 'memory' });
    const before = await server.next('memory');
    const cold = await dialMeasured(peer, server, IDLE_SOCKETS);
    server.send({ type: 'memory' });
    const after = await server.next('memory');
    await cold.sink.close();
    await untilClosed(server);
    const warm = await dialMeasured(peer, server, IDLE_SOCKETS);
    await warm.sink.close();
    return {
      upgradesPerSec: warm.perSec,
      upgradesPerCpuSec: warm.perCpuSec,
      coldUpgradesPerCpuSec: cold.perCpuSec,
      rssPerConn: (after.rss - before.rss) / IDLE_SOCKETS,
      heapPerConn: (after.heapUsed - before.heapUsed) / IDLE_SOCKETS,
    };
  } finally {
    server.kill();
  }
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
const k = (xs) => fmt(xs.map((x) => x / 1000), 0, 'k');

async function main() {
  const started = Date.now();
  console.error(`bench: ${ROUNDS} round(s); idle ${IDLE_SOCKETS} sockets; fan-out to ${FANOUT_SIZES.join(' and ')}; servers on core 0, load on core 1`);
  const { main: jwtBench } = require('./jwt-verify');
  const jwtResults = await jwtBench();
  const redis = await startRedis();
  process.on('exit', () => redis.proc.kill('SIGKILL'));
  const idleResults = { ws: [], gateway: [], socketio: [] };
  const fanout = {};
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      for (const peer of ['ws', 'gateway', 'socketio']) {
        process.stderr.write(`  round ${r}/${ROUNDS} idle ${peer}… `);
        const res = await idle(peer, redis.url);
        idleResults[peer].push(res);
        console.error(`${Math.round(res.upgradesPerSec)} upgrades/s, ${(res.rssPerConn / 1024).toFixed(1)} KB RSS/conn`);
      }
      for (const size of FANOUT_SIZES) {
        for (const peer of ['ws', 'ws8', 'gateway', 'gateway-cluster', 'socketio']) {
          process.stderr.write(`  round ${r}/${ROUNDS} fan-out ${peer} × ${size}… `);
          const res = await measureFanout(peer, size, { redisUrl: redis.url, targetDeliveries: FANOUT_DELIVERIES, oneUser: ONE_USER });
          for (const [mode, value] of Object.entries(res)) ((fanout[`${mode}/${size}`] ??= {})[peer] ??= []).push(value.perCpuSec);
          console.error(`${Math.round(res.single.perCpuSec / 1000)}k single, ${Math.round(res.burst8.perCpuSec / 1000)}k burst8 per CPU-s`);
        }
      }
    }
    // Tail latency moves with the host (steal time), so the peers alternate within each round too.
    const latency = [];
    for (let r = 1; r <= ROUNDS; r++) {
      for (const { rate, seconds } of LATENCY) {
        for (const peer of ['gateway', 'socketio']) {
          process.stderr.write(`  round ${r}/${ROUNDS} latency ${peer} ${rate}/s… `);
          const res = await measureLatency({ peer, rate, seconds, subscribers: 10, redisUrl: redis.url });
          latency.push({ peer, rate, ...res });
          console.error(`p50 ${res.p50.toFixed(2)} ms, p99 ${res.p99.toFixed(2)} ms`);
        }
      }
    }

    const slow = [];
    for (const peer of ['gateway', 'socketio']) {
      process.stderr.write(`  slow consumers ${peer}… `);
      const res = await measureSlowConsumer({ peer, redisUrl: redis.url, seconds: quick ? 3 : 10, pairs: quick ? 1 : 2 });
      slow.push({ peer, ...res });
      console.error(res.rounds.map((r) => `healthy p99 ${r.alone.toFixed(1)} -> ${r.beside.toFixed(1)} ms`).join(', ') + `; RSS +${res.peakRssGrowthMB.toFixed(1)} MB`);
    }

    const door = await require('./door-flood').main();

    const webhookBench = require('./webhooks');
    const webhooks = await webhookBench.measureWebhooks({ rounds: ROUNDS, quick });

    // Receipts: fan-out with ack against without, and Redis bytes per receipt (bench/receipts.js; alone: npm run bench:receipts).
    const receiptsBench = require('./receipts');
    const receipts = await receiptsBench.measureReceipts({ rounds: ROUNDS, quick, redisUrl: redis.url });

    // The same channel over SSE against WebSocket (bench/sse.js; alone: npm run bench:sse).
    const sseBench = require('./sse');
    const sse = await sseBench.measureSse({ rounds: ROUNDS, quick, redisUrl: redis.url });

    console.error('  Redis topologies (bench/topologies.js)…');
    const { measureTopologies, topologyTables, writeRecord } = require('./topologies');
    const topologies = await measureTopologies({ rounds: quick ? 1 : 2, quick });

    const col = (peer, key) => idleResults[peer].map((x) => x[key]);
    const ratio = (a, b) => (median(a) / median(b)).toFixed(2);
    const idleRows = [
      ['upgrades/s, running server (G: JWT-verified; W, S: no auth)', fmt(col('ws', 'upgradesPerSec')), fmt(col('gateway', 'upgradesPerSec')), fmt(col('socketio', 'upgradesPerSec')), ratio(col('gateway', 'upgradesPerSec'), col('ws', 'upgradesPerSec')), ratio(col('gateway', 'upgradesPerSec'), col('socketio', 'upgradesPerSec'))],
      ['upgrades per server CPU-second, running server', fmt(col('ws', 'upgradesPerCpuSec')), fmt(col('gateway', 'upgradesPerCpuSec')), fmt(col('socketio', 'upgradesPerCpuSec')), ratio(col('gateway', 'upgradesPerCpuSec'), col('ws', 'upgradesPerCpuSec')), ratio(col('gateway', 'upgradesPerCpuSec'), col('socketio', 'upgradesPerCpuSec'))],
      ['upgrades per server CPU-second, first dial of a fresh process', fmt(col('ws', 'coldUpgradesPerCpuSec')), fmt(col('gateway', 'coldUpgradesPerCpuSec')), fmt(col('socketio', 'coldUpgradesPerCpuSec')), ratio(col('gateway', 'coldUpgradesPerCpuSec'), col('ws', 'coldUpgradesPerCpuSec')), ratio(col('gateway', 'coldUpgradesPerCpuSec'), col('socketio', 'coldUpgradesPerCpuSec'))],
      [`idle RSS per connection at ${IDLE_SOCKETS}`, fmt(col('ws', 'rssPerConn').map((b) => b / 1024), 1, ' KB'), fmt(col('gateway', 'rssPerConn').map((b) => b / 1024), 1, ' KB'), fmt(col('socketio', 'rssPerConn').map((b) => b / 1024), 1, ' KB'), ratio(col('gateway', 'rssPerConn'), col('ws', 'rssPerConn')), ratio(col('gateway', 'rssPerConn'), col('socketio', 'rssPerConn'))],
      [`idle heap per connection at ${IDLE_SOCKETS} (after GC)`, fmt(col('ws', 'heapPerConn').map((b) => b / 1024), 2, ' KB'), fmt(col('gateway', 'heapPerConn').map((b) => b / 1024), 2, ' KB'), fmt(col('socketio', 'heapPerConn').map((b) => b / 1024), 2, ' KB'), ratio(col('gateway', 'heapPerConn'), col('ws', 'heapPerConn')), ratio(col('gateway', 'heapPerConn'), col('socketio', 'heapPerConn'))],
    ];
    const idleTable = ['| measure | W | G | S | G/W | G/S |', '|---|---|---|---|---|---|', ...idleRows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

    const fanRows = Object.entries(fanout).map(([key, peers]) => {
      const [mode, size] = key.split('/');
      const ref = mode === 'burst8' ? peers.ws8 : peers.ws;
      return [
        `${mode === 'burst8' ? 'bursts of 8' : 'single broadcasts'}, ${Number(size).toLocaleString('en')} subscribers`,
        k(peers.ws), k(peers.ws8), k(peers.gateway), k(peers['gateway-cluster']), k(peers.socketio),
        `${ratio(peers.gateway, ref)} (vs ${mode === 'burst8' ? 'W8' : 'W'})`,
        ratio(peers.gateway, peers.socketio),
      ];
    });
    const fanTable = ['| deliveries per server CPU-second, 1 KB | W | W8 | G | Gc (cluster) | S | G/ref | G/S |', '|---|---|---|---|---|---|---|---|', ...fanRows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

    const latRows = LATENCY.map(({ rate }) => {
      const runs = (peer) => latency.filter((l) => l.peer === peer && l.rate === rate);
      const [g, s] = [runs('gateway'), runs('socketio')];
      const ms = (rs, key) => fmt(rs.map((x) => x[key]), 2, ' ms');
      const pair = g.map((x, i) => x.p99 / s[i].p99);
      const sum = (rs, key) => rs.reduce((n, x) => n + x[key], 0);
      return [
        `${rate.toLocaleString('en')}/s`,
        `${ms(g, 'p50')} / ${ms(g, 'p99')} / ${ms(g, 'p999')}`,
        `${ms(s, 'p50')} / ${ms(s, 'p99')} / ${ms(s, 'p999')}`,
        ratio(g.map((x) => x.p50), s.map((x) => x.p50)),
        ratio(g.map((x) => x.p99), s.map((x) => x.p99)),
        fmt(pair, 2),
        `${sum(g, 'deliveries')}/${sum(g, 'expected')}, ${sum(s, 'deliveries')}/${sum(s, 'expected')}`,
      ];
    });
    const latTable = ['| cross-replica publish → deliver, 2 replicas | G p50 / p99 / p99.9 | S p50 / p99 / p99.9 | G/S p50 (medians) | G/S p99 (medians) | G/S p99 per round | delivered (G, S) |', '|---|---|---|---|---|---|---|', ...latRows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

    const pct = (xs) => fmt(xs.map((x) => x * 100), 0, '%');
    const slowTable = [
      `| 100 stalled subscribers beside 200 healthy ones, 16 KB alerts at 50/s, ${slow[0].rounds.length} alternating pair(s) | healthy p99 alone | beside the stalled | ratio per pair | server core busy, alone → beside | server RSS growth (peak) | stalled closed by the server |`,
      '|---|---|---|---|---|---|---|',
      ...slow.map((s) => {
        const col = (key) => s.rounds.map((r) => r[key]);
        return `| ${s.peer === 'gateway' ? 'G' : 'S'} | ${fmt(col('alone'), 1, ' ms')} | ${fmt(col('beside'), 1, ' ms')} | ${fmt(col('ratio'), 2)} | ${pct(col('busyAlone'))} → ${pct(col('busyBeside'))} | ${s.peakRssGrowthMB.toFixed(1)} MB | ${s.stalledClosedByServer} of ${s.stalledDialed} |`;
      }),
    ].join('\n');

    const doorTable = [
      '| one address floods tokenless upgrades; 100 users from other addresses connect meanwhile | flood refused/s | flood answers | users in | server core busy | server CPU per refused upgrade |',
      '|---|---|---|---|---|---|',
      ...door.map((r) => `| G, ${r.name} | ${Math.round(r.floodPerSec)} | ${Object.entries(r.statuses).map(([s, n]) => `${s}: ${n}`).join(', ')} | ${r.usersIn}/100 | ${(r.serverCpuShare * 100).toFixed(0)}% | ${r.usPerRefused.toFixed(0)} µs |`),
    ].join('\n');

    const jwtLine = `JWT verifications/s (one core, in-process): ${jwtResults.map((r) => `${r.name}: ${Math.round(r.perSec)}/s (${r.usPerOp.toFixed(1)} µs)`).join('; ')}`;
    const machine = `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
    const minutes = ((Date.now() - started) / 60000).toFixed(1);
    const report = `${jwtLine}\n\n${idleTable}\n\n${fanTable}\n\n${latTable}\n\n${slowTable}\n\n${doorTable}\n\n${webhookBench.webhookTable(webhooks)}\n\n${receiptsBench.receiptsTable(receipts)}\n\n${sseBench.sseTable(sse)}`;
    console.log(`\n${report}\n\nRedis topologies:\n\n${topologyTables(topologies)}\n\nmachine: ${machine}; ${ROUNDS} round(s); ${minutes} min`);
    // Every figure of the run, for bench/capacity.js (docs/scaling.md): the last run always, the recorded one
    // with --write.
    const results = {
      command: `npm run bench${quick ? ' -- --quick' : ''}${ONE_USER ? ' -- --one-user' : ''}`,
      users: ONE_USER ? 'one user for every connection' : 'every connection its own user and token',
      date: new Date().toISOString().slice(0, 10),
      machine,
      rounds: ROUNDS,
      jwt: jwtResults,
      idle: { sockets: IDLE_SOCKETS, ...idleResults },
      fanout,
      latency,
      slow,
      door,
      webhooks,
      receipts,
      sse,
      topologies,
    };
    writeFileSync(join(__dirname, 'last-run.json'), `${JSON.stringify(results, null, 1)}\n`);
    console.error(`bench: figures in ${join(__dirname, 'last-run.json')}; \`npm run capacity -- bench/last-run.json\` turns them into the capacity table`);
    if (args.has('--write')) {
      const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
      const text = readFileSync(doc, 'utf8');
      const block = `<!-- bench:start -->\nCommand: \`npm run bench${quick ? ' -- --quick' : ''} -- --write\` · ${new Date().toISOString().slice(0, 10)} · ${machine} · ${ROUNDS} interleaved round(s), ${minutes} min\n\n${report}\n<!-- bench:end -->`;
      writeFileSync(doc, text.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, block));
      // The scale run (npm run bench:scale -- --write) records its own section of the same file: kept.
      const resultsFile = join(__dirname, '..', 'docs', 'bench-results.json');
      const { scale } = JSON.parse(readFileSync(resultsFile, 'utf8'));
      const recorded = scale ? { ...results, scale } : results;
      writeFileSync(resultsFile, `${JSON.stringify(recorded, null, 1)}\n`);
      require('./charts').writeCharts(recorded); // docs/chart-*.svg, linked from the README and docs/benchmarks.md
      writeRecord(topologies, `npm run bench${quick ? ' -- --quick' : ''} -- --write`); // its own section of the doc
      console.error(`bench: wrote ${doc}, docs/bench-results.json and docs/chart-*.svg (run \`npm run capacity -- --write\` to update docs/scaling.md)`);
    }
  } finally {
    redis.proc.kill('SIGKILL');
  }
}

runPinned(1);
main().then(
  () => process.exit(0),
  (error) => {
    console.error(`bench: ${error.message}`);
    process.exit(1);
  },
);
