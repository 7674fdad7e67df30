#!/usr/bin/env node
// What one connection costs, the way production looks: every connection its own user with its own fresh token,
// the gateway at its default log level (lines written through its own destination to /dev/null), against bare
// `ws` sending the same welcome frame, in the same run (W G W G ..., or W A B W A B ... with two checkouts).
//   node bench/upgrade-cost.js [--sockets 5000] [--rounds 3] [<checkout> ...]   (default: this checkout)
// Each server (bench/peers/server.js, pinned to core 0) is fresh per round:
// - memory: idle RSS and heap per connection after full GCs, N distinct-user connections (the first dial);
// - upgrades per server CPU-second: once those are closed, N more with other users' fresh tokens (a running
//   server's cost), server CPU read from /proc/<pid>/stat, the load (bench/load/sink.js) on core 1.
// BENCH_CPU_PROF=<dir> writes each server's V8 CPU profile there. LOG_LEVEL=debug|info|warn sets the gateways'.
// --log-bytes: each gateway writes its log lines to a file (not /dev/null), and the bytes per 1,000 connections
// (each opened and closed) are reported beside the CPU (docs/observability.md, connection logs).
'use strict';
const path = require('node:path');
const { readFileSync, writeFileSync, mkdtempSync, rmSync, statSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { spawn } = require('node:child_process');
const jwt = require('jsonwebtoken');
const { runPinned, SECRET } = require('./fanout');

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const [value] = argv.splice(i, 2).slice(1);
  return Number(value);
};
const LOG_BYTES = argv.includes('--log-bytes') && (argv.splice(argv.indexOf('--log-bytes'), 1), true);
const SOCKETS = option('sockets', 5000);
const ROUNDS = option('rounds', 3);
const ROOTS = (argv.length ? argv : ['.']).map((p) => path.resolve(p));
const TICK = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in clock ticks of 10 ms (getconf CLK_TCK)

const work = mkdtempSync(path.join(tmpdir(), 'upgrade-cost-'));
let batch = 0;
/** A file of `count` tokens, each for a user no other connection of the run has (distinct `sub`). */
function tokenFile(count) {
  const b = batch++;
  const tokens = Array.from({ length: count }, (_, i) => jwt.sign({ sub: `u${b}-${i}`, role: 'authority' }, SECRET, { expiresIn: 3600 }));
  const file = path.join(work, `tokens-${b}.json`);
  writeFileSync(file, JSON.stringify(tokens));
  return file;
}

/** Server CPU seconds so far (user + system), from the kernel, not from the server. */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICK; // utime, stime (fields 14 and 15)
}

function startSink(port, peer, count) {
  const url = peer === 'ws' ? `ws://127.0.0.1:${port}/` : `ws://127.0.0.1:${port}/api/alerts/subscribe?token=TOKEN`;
  const env = { ...process.env, ...(peer === 'ws' ? {} : { SINK_TOKENS: tokenFile(count) }) };
  const proc = spawn('taskset', ['-c', '1', process.execPath, path.join(__dirname, 'load', 'sink.js'), url, String(count), 'welcome'], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env,
  });
  const next = (type) => new Promise((resolve, reject) => {
    const on = (msg) => msg.type === type && (proc.off('message', on), proc.off('exit', exit), resolve(msg));
    const exit = (code) => reject(new Error(`sink exited with ${code} while waiting for ${type}`));
    proc.on('message', on);
    proc.once('exit', exit);
  });
  return {
    ready: next('ready'),
    async dial() {
      proc.send({ type: 'dial' });
      const dialed = await next('dialed');
      if (dialed.failed) throw new Error(`${peer}: ${dialed.failed} of ${count} sockets failed to open`);
    },
    async close() {
      proc.send({ type: 'close' });
      await next('closed').catch(() => undefined);
    },
  };
}

async function untilClosed(server) {
  for (;;) {
    server.send({ type: 'open' });
    if ((await server.next('open')).count === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20)); // poll: the server sees the resets soon after
  }
}

async function measure(root, peer) {
  const { startServer } = require(path.join(root, 'bench', 'fanout.js'));
  const logFile = LOG_BYTES && peer !== 'ws' ? path.join(work, `log-${batch++}.jsonl`) : undefined;
  const env = { ...(process.env.LOG_LEVEL ? { LOG_LEVEL: process.env.LOG_LEVEL } : {}), ...(logFile ? { BENCH_LOG_FILE: logFile } : {}) };
  const server = await startServer(peer, '', 0, env);
  const pid = server.proc.pid;
  try {
    server.send({ type: 'memory' });
    const before = await server.next('memory');
    const cold = startSink(server.port, peer, SOCKETS);
    await cold.ready;
    await cold.dial();
    await new Promise((resolve) => setTimeout(resolve, 200)); // the last welcomes' writes settle
    server.send({ type: 'memory' });
    const after = await server.next('memory');
    await cold.close();
    await untilClosed(server);
    const warm = startSink(server.port, peer, SOCKETS);
    await warm.ready;
    const cpu0 = cpuOf(pid);
    const t0 = process.hrtime.bigint();
    await warm.dial();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = cpuOf(pid) - cpu0;
    await warm.close();
    let logBytesPer1000;
    if (logFile) {
      await untilClosed(server);
      await new Promise((resolve) => setTimeout(resolve, 1500)); // the batched destination flushes every second
      logBytesPer1000 = (statSync(logFile).size / (2 * SOCKETS)) * 1000; // both dials, each socket opened and closed
    }
    return {
      logBytesPer1000,
      upgradesPerCpuSec: SOCKETS / cpu,
      upgradesPerSec: SOCKETS / seconds,
      rssPerConn: (after.rss - before.rss) / SOCKETS,
      heapPerConn: (after.heapUsed - before.heapUsed) / SOCKETS,
    };
  } finally {
    server.kill();
    await new Promise((resolve) => (server.proc.exitCode !== null ? resolve() : server.proc.once('exit', resolve)));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const spread = (xs, digits) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

async function main() {
  const peers = [['W', ROOTS[0], 'ws'], ...ROOTS.map((root, i) => [ROOTS.length > 1 ? `G${i + 1}` : 'G', root, 'gateway'])];
  const results = Object.fromEntries(peers.map(([name]) => [name, []]));
  console.error(`upgrade-cost: ${SOCKETS} distinct users per dial, ${ROUNDS} round(s), log level ${process.env.LOG_LEVEL ?? 'info'}; ${peers.map(([n, r, p]) => `${n} = ${p === 'ws' ? 'bare ws' : r}`).join(', ')}`);
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [name, root, peer] of peers) {
      const res = await measure(root, peer);
      results[name].push(res);
      const logs = res.logBytesPer1000 === undefined ? '' : `, ${Math.round(res.logBytesPer1000)} log bytes per 1,000 connections`;
      console.error(`  round ${r}/${ROUNDS} ${name}: ${Math.round(res.upgradesPerCpuSec)} upgrades/CPU-s (${(1e6 / res.upgradesPerCpuSec).toFixed(0)} ms CPU per 1,000), ${Math.round(res.upgradesPerSec)}/s, ${(res.rssPerConn / 1024).toFixed(2)} KB RSS, ${(res.heapPerConn / 1024).toFixed(2)} KB heap per connection${logs}`);
    }
  }
  const col = (name, key) => results[name].map((x) => x[key]);
  const perRound = (name, key) => results[name].map((x, i) => x[key] / results.W[i][key]);
  const rows = [];
  for (const [name] of peers) {
    const ratio = (key) => (name === 'W' ? '1' : `${(median(col(name, key)) / median(col('W', key))).toFixed(2)} (per round ${perRound(name, key).map((x) => x.toFixed(2)).join(', ')})`);
    const logs = LOG_BYTES ? ` ${name === 'W' ? '—' : spread(col(name, 'logBytesPer1000').map((b) => b / 1024), 1)} |` : '';
    rows.push(`| ${name} | ${spread(col(name, 'upgradesPerCpuSec'), 0)} | ${ratio('upgradesPerCpuSec')} | ${spread(col(name, 'rssPerConn').map((b) => b / 1024), 2)} | ${ratio('rssPerConn')} | ${spread(col(name, 'heapPerConn').map((b) => b / 1024), 2)} | ${ratio('heapPerConn')} |${logs}`);
  }
  const logHead = LOG_BYTES ? [' log KB per 1,000 connections |', '---|'] : ['', ''];
  console.log([`| peer | upgrades per server CPU-s | ÷ W | idle RSS KB/conn | ÷ W | heap KB/conn | ÷ W |${logHead[0]}`, `|---|---|---|---|---|---|---|${logHead[1]}`, ...rows].join('\n'));
  console.log(`${SOCKETS} distinct users per dial, ${ROUNDS} rounds, medians (min–max); log level ${process.env.LOG_LEVEL ?? 'info'}`);
}

runPinned(1);
main().then(
  () => (rmSync(work, { recursive: true, force: true }), process.exit(0)),
  (error) => {
    rmSync(work, { recursive: true, force: true });
    console.error(`upgrade-cost: ${error.stack}`);
    process.exit(1);
  },
);
