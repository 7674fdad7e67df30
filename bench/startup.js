#!/usr/bin/env node
// npm run bench:startup [-- rounds] [-- --peer <checkout>]   (default 5 rounds)
// Wall time of what a developer types, each from its own fresh process, in interleaved rounds (token, doctor,
// start, token, ...): `npm run --silent token -- --role service`, `npm run --silent doctor -- --help`, and
// `npm start` until the gateway logs that it listens (embedded mode, free ports). dist/ must already be built:
// the figures are the repeated start, not the first build. With --peer, another checkout (an older commit, its
// dist/ built) runs each command right after this one, so both see the same load. Medians with min–max, of wall
// time and of CPU time (user + system of npm and everything it ran): on a loaded machine the wall time grows with
// the load, the CPU time much less, and on a quiet one the two are close (these commands are single-threaded).
'use strict';
const { spawn } = require('node:child_process');
const { mkdtempSync, readdirSync, readFileSync, rmSync } = require('node:fs');
const { createServer } = require('node:net');
const { cpus, loadavg, tmpdir } = require('node:os');
const { join } = require('node:path');

const ROOT = join(__dirname, '..');
const argv = process.argv.slice(2);
const peerAt = argv.indexOf('--peer');
const PEER = peerAt === -1 ? undefined : argv.splice(peerAt, 2)[1];
const ROUNDS = Number(argv[0] ?? 5);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const TICKS = 100; // USER_HZ on Linux: /proc/<pid>/stat counts CPU time in hundredths of a second

/** CPU seconds of a process group so far: its live members, plus the children they have waited for. */
function groupCpu(pgid) {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid) ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  }
  return ticks / TICKS;
}

/** Wall and CPU seconds from spawn to exit (status 0 required); CPU from /usr/bin/time (npm and its children). */
function timeExit(cwd, args) {
  const dir = mkdtempSync(join(tmpdir(), 'rg-startup-'));
  const out = join(dir, 'time');
  const t0 = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%U %S', '-o', out, 'npm', ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0) return reject(new Error(`npm ${args.join(' ')} exited ${code}: ${stderr}`));
      const [user, system] = readFileSync(out, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
      rmSync(dir, { recursive: true });
      resolve({ wall, cpu: user + system });
    }),
  );
}

/** Seconds from spawning `npm start` to the "listening" log line; then stops the process group. */
async function timeListening(cwd) {
  const env = { ...process.env, HOST: '127.0.0.1', PORT: String(await freePort()), INTERNAL_HOST: '127.0.0.1', INTERNAL_PORT: String(await freePort()) };
  const t0 = process.hrtime.bigint();
  // detached: npm, its shell and node form one process group, stopped together below.
  const child = spawn('npm', ['start'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const seconds = await new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('"event":"listening"')) resolve({ wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: groupCpu(child.pid) });
    });
    child.stderr.on('data', (chunk) => (out += chunk));
    void exited.then((code) => reject(new Error(`npm start exited ${code} before listening: ${out.slice(-2000)}`)));
  });
  process.kill(-child.pid, 'SIGTERM');
  await exited;
  return seconds;
}

const CASES = {
  'npm run token -- --role service': (cwd) => timeExit(cwd, ['run', '--silent', 'token', '--', '--role', 'service']),
  'npm run doctor -- --help': (cwd) => timeExit(cwd, ['run', '--silent', 'doctor', '--', '--help']),
  'npm start (to listening)': timeListening,
};
const CHECKOUTS = PEER ? { this: ROOT, peer: PEER } : { this: ROOT };

function spread(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  return `${median.toFixed(2)} s (${sorted[0].toFixed(2)}–${sorted.at(-1).toFixed(2)})`;
}

function summary(samples) {
  return `${spread(samples.map((s) => s.wall))} · CPU ${spread(samples.map((s) => s.cpu))}`;
}

async function main() {
  const results = Object.fromEntries(Object.keys(CASES).map((name) => [name, Object.fromEntries(Object.keys(CHECKOUTS).map((c) => [c, []]))]));
  const load = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of Object.entries(CASES)) {
      for (const [checkout, cwd] of Object.entries(CHECKOUTS)) {
        load.push(loadavg()[0]);
        results[name][checkout].push(await run(cwd));
      }
    }
  }
  console.log(`${ROUNDS} interleaved rounds · ${cpus().length} × ${cpus()[0].model} · Node ${process.version} · 1-min load average ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)} during the run`);
  const columns = Object.keys(CHECKOUTS);
  console.log(`| command (wall · CPU, median (min–max)) | ${columns.map((c) => (c === 'this' ? 'this checkout' : `peer (${PEER})`)).join(' | ')} |`);
  console.log(`|---|${columns.map(() => '---').join('|')}|`);
  for (const [name, byCheckout] of Object.entries(results)) console.log(`| \`${name}\` | ${columns.map((c) => summary(byCheckout[c])).join(' | ')} |`);
}

main().catch((error) => {
  console.error(error.message);
  process.exitCode = 1;
});
