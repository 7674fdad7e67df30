#!/usr/bin/env node
// npm run bench [-- --quick] [-- --write]
// Interleaved rounds (W, G, W, G, ...): bare `ws` (W, no auth) against this gateway (G, JWT on every upgrade).
// Server pinned to core 0, load to core 1. Prints medians with min–max and the G/W ratios; --write also
// records the run in docs/benchmarks.md.
'use strict';
const { spawn } = require('node:child_process');
const { cpus, totalmem } = require('node:os');
const { writeFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const jwt = require('jsonwebtoken');

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const ROUNDS = quick ? 1 : 3;
const SOCKETS = quick ? 2000 : 5000;
const CONCURRENCY = 200;
const SECRET = 'bench-secret-bench-secret-bench-secret!!';
const pinned = (core, argv) => (process.platform === 'linux' ? ['taskset', ['-c', String(core), ...argv]] : [argv[0], argv.slice(1)]);

function child(core, argv, env = {}) {
  const [cmd, rest] = pinned(core, argv);
  const proc = spawn(cmd, rest, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, ...env } });
  const next = (type) => new Promise((resolve) => {
    const on = (msg) => { if (msg.type === type) { proc.off('message', on); resolve(msg); } };
    proc.on('message', on);
  });
  return { proc, next, send: (msg) => proc.send(msg) };
}

async function round(peer) {
  const server = child(0, [process.execPath, '--expose-gc', join(__dirname, 'peers', 'server.js'), peer], {
    JWT_SECRET: SECRET, LOG_LEVEL: 'info', MAX_MESSAGE_BYTES: '65536', MAX_UPGRADES_PER_SEC: '0',
  });
  const { port } = await server.next('ready');
  server.send({ type: 'memory' });
  const before = await server.next('memory');
  const token = jwt.sign({ sub: 'bench', role: 'authority' }, SECRET, { expiresIn: 3600 });
  const url = peer === 'gateway' ? `ws://127.0.0.1:${port}/api/alerts/subscribe?token=${token}` : `ws://127.0.0.1:${port}/`;
  const dialer = child(1, [process.execPath, join(__dirname, 'load', 'dial.js'), url, String(SOCKETS), String(CONCURRENCY)]);
  await dialer.next('ready');
  dialer.send({ type: 'dial' });
  const dialed = await dialer.next('dialed');
  server.send({ type: 'memory' });
  const after = await server.next('memory');
  dialer.send({ type: 'close' });
  await dialer.next('closed');
  server.proc.kill('SIGKILL');
  if (dialed.failed) throw new Error(`${peer}: ${dialed.failed} of ${SOCKETS} handshakes failed: ${JSON.stringify(dialed.statuses)}`);
  const cpuSeconds = (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1e6;
  return {
    upgradesPerSec: dialed.open / dialed.seconds,
    upgradesPerCpuSec: dialed.open / cpuSeconds,
    rssPerConn: (after.rss - before.rss) / dialed.open,
    heapPerConn: (after.heapUsed - before.heapUsed) / dialed.open,
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, unit, digits = 0) => {
  const m = median(xs).toFixed(digits);
  return xs.length > 1 ? `${m}${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})` : `${m}${unit}`;
};

async function main() {
  console.error(`bench: ${ROUNDS} round(s), ${SOCKETS} sockets, ${CONCURRENCY} concurrent handshakes; server on core 0, load on core 1`);
  const { main: jwtBench } = require('./jwt-verify');
  const jwtResults = jwtBench();
  const results = { ws: [], gateway: [] };
  for (let r = 1; r <= ROUNDS; r++) {
    for (const peer of ['ws', 'gateway']) {
      process.stderr.write(`  round ${r}/${ROUNDS}: ${peer}… `);
      const res = await round(peer);
      results[peer].push(res);
      console.error(`${Math.round(res.upgradesPerSec)} upgrades/s, ${(res.rssPerConn / 1024).toFixed(1)} KB RSS/conn`);
    }
  }
  const col = (peer, key) => results[peer].map((x) => x[key]);
  const ratio = (key) => median(col('gateway', key)) / median(col('ws', key));
  const rows = [
    ['JWT verifications/s (one core, in-process)', jwtResults.map((r) => `${r.name}: ${Math.round(r.perSec)}/s (${r.usPerOp.toFixed(1)} µs)`).join('; '), '', ''],
    ['upgrades/s (G: JWT-verified)', fmt(col('ws', 'upgradesPerSec'), ''), fmt(col('gateway', 'upgradesPerSec'), ''), ratio('upgradesPerSec').toFixed(2)],
    ['upgrades per server CPU-second', fmt(col('ws', 'upgradesPerCpuSec'), ''), fmt(col('gateway', 'upgradesPerCpuSec'), ''), ratio('upgradesPerCpuSec').toFixed(2)],
    [`idle RSS per connection at ${SOCKETS}`, fmt(col('ws', 'rssPerConn').map((b) => b / 1024), ' KB', 1), fmt(col('gateway', 'rssPerConn').map((b) => b / 1024), ' KB', 1), ratio('rssPerConn').toFixed(2)],
    [`idle heap per connection at ${SOCKETS} (after GC)`, fmt(col('ws', 'heapPerConn').map((b) => b / 1024), ' KB', 2), fmt(col('gateway', 'heapPerConn').map((b) => b / 1024), ' KB', 2), ratio('heapPerConn').toFixed(2)],
  ];
  const table = ['| measure | W (bare ws, no auth) | G (gateway) | G/W |', '|---|---|---|---|', ...rows.slice(1).map((r) => `| ${r.join(' | ')} |`)].join('\n');
  const machine = `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  console.log(`\n${rows[0][0]}: ${rows[0][1]}\n\n${table}\n\nmachine: ${machine}`);
  if (args.has('--write')) {
    const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
    const text = readFileSync(doc, 'utf8');
    const block = `<!-- bench:start -->\nCommand: \`npm run bench${quick ? ' -- --quick' : ''} -- --write\` · ${new Date().toISOString().slice(0, 10)} · ${machine}\n\n${rows[0][0]}: ${rows[0][1]}\n\n${table}\n<!-- bench:end -->`;
    writeFileSync(doc, text.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, block));
    console.error(`bench: wrote ${doc}`);
  }
}

main().catch((error) => {
  console.error(`bench: ${error.message}`);
  process.exit(1);
});
