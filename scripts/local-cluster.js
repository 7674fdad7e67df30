#!/usr/bin/env node
// npm run cluster [-- --replicas N]: a local cluster in one command. A throwaway redis-server (or REDIS_URL if
// set), N replicas (default 3), and HAProxy in front when it is installed, all on free ports; prints the URLs,
// a subscriber token and a publish command; Ctrl-C stops everything. Needs `npm run build` first (the npm
// script does it).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const net = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const ROOT = join(__dirname, '..');
const args = process.argv.slice(2);
/** `--replicas N` or `--replicas=N`: 1 to 20. */
function replicasArg() {
  const at = args.findIndex((a) => a === '--replicas' || a.startsWith('--replicas='));
  if (at === -1) return 3;
  const raw = args[at].includes('=') ? args[at].split('=')[1] : args[at + 1];
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 20) {
    console.error(`cluster: --replicas must be a whole number from 1 to 20 (got ${raw})`);
    process.exit(2);
  }
  return n;
}
const REPLICAS = replicasArg();
/** Started processes, in start order: the replicas are stopped first (they drain), then HAProxy, then Redis. */
const children = [];
const replicaProcesses = [];
let workDir;
/** HAProxy's stdout and stderr, in workDir (removed with it on Ctrl-C). */
let haproxyLog;

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function has(bin) {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

async function until(check, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const answers = (port, path = '/readyz') => fetch(`http://127.0.0.1:${port}${path}`).then((r) => r.status === 200, () => false);

const alive = (child) => child.exitCode === null && child.signalCode === null;

/** SIGTERM to a set of processes; resolves when all have exited (SIGKILL after 15 s). */
function terminate(set) {
  const running = set.filter(alive);
  const gone = Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve))));
  for (const child of running) child.kill('SIGTERM');
  const force = setTimeout(() => running.forEach((child) => alive(child) && child.kill('SIGKILL')), 15_000);
  return gone.finally(() => clearTimeout(force));
}

/**
 * The replicas first (they drain: clients get 1012 and the load balancer and Redis are still there for them),
 * then HAProxy and Redis; then the temp directory. Exits once nothing is left.
 */
async function stop(code = 0) {
  await terminate(replicaProcesses);
  await terminate(children.filter((child) => !replicaProcesses.includes(child)));
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  process.exit(code);
}

async function main() {
  // A key for this session unless one is given: tokens below are signed with it, and nothing runs on the
  // public development key.
  process.env.JWT_SECRET ??= randomBytes(32).toString('base64url');
  let redisUrl = process.env.REDIS_URL;
  if (redisUrl) {
    // Said at once, rather than after replicas that wait for it time out.
    let target;
    try {
      target = new URL(redisUrl);
    } catch {
      throw new Error('REDIS_URL is not a redis://host:port/db URL (npm run cluster takes a standalone Redis)');
    }
    const port = Number(target.port || 6379);
    const reachable = await new Promise((resolve) => {
      const socket = net.connect(port, target.hostname, () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (!reachable) throw new Error(`nothing answers at ${target.hostname}:${port} (REDIS_URL); start a Redis there, or unset REDIS_URL to get a throwaway one`);
  }
  if (!redisUrl) {
    if (!has('redis-server')) throw new Error('redis-server is not installed (Debian: apt-get install redis-server), or set REDIS_URL');
    const port = await freePort();
    children.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore', detached: true }));
    redisUrl = `redis://127.0.0.1:${port}/0`;
    await until(() => new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    }), 'redis-server');
  }
  const replicas = [];
  for (let i = 1; i <= REPLICAS; i++) {
    const replica = { name: `local-${i}`, port: await freePort(), internalPort: await freePort() };
    const env = { ...process.env, REDIS_URL: redisUrl, NODE_ID: replica.name, PORT: String(replica.port), INTERNAL_PORT: String(replica.internalPort), HOST: '127.0.0.1', INTERNAL_HOST: '127.0.0.1', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' };
    // Its own process group (detached): a Ctrl-C in the terminal reaches this script alone, which then stops
    // the replicas once, with SIGTERM, so they drain (1012) instead of being told twice and exiting at once.
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], { env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    replicaProcesses.push(child);
    child.on('exit', (code) => {
      if (!stopping) {
        console.error(`cluster: ${replica.name} exited (${code}); stopping`);
        stop(1);
      }
    });
    children.push(child);
    replicas.push(replica);
  }
  for (const r of replicas) await until(() => answers(r.port), `${r.name} to be ready`);

  let front;
  if (has('haproxy')) {
    front = await freePort();
    let config = readFileSync(join(ROOT, 'docs', 'examples', 'haproxy.cfg'), 'utf8').replace(/^(\s*)bind :8000$/m, `$1bind 127.0.0.1:${front}`).replace(/^\s*server .*$/gm, '');
    config += replicas.map((r) => `    server ${r.name} 127.0.0.1:${r.port} check\n`).join('');
    workDir = mkdtempSync(join(tmpdir(), 'rg-cluster-'));
    const file = join(workDir, 'haproxy.cfg');
    writeFileSync(file, config);
    // HAProxy's lines (a replica DOWN while it drains, and so on: [WARNING]s about what this script does on
    // purpose) go to a log file, not into the terminal with the commands to paste; the banner names it.
    haproxyLog = join(workDir, 'haproxy.log');
    const log = openSync(haproxyLog, 'a');
    const haproxy = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', log, log], detached: true });
    closeSync(log);
    children.push(haproxy);
    haproxy.on('exit', (code) => {
      if (stopping) return;
      // Not stopped by us: what it said is the reason, so it is shown here, once.
      console.error(`cluster: HAProxy exited (${code}); its log:\n${readFileSync(haproxyLog, 'utf8').trim()}\ncluster: stopping`);
      stopping = true;
      stop(1);
    });
    await until(() => answers(front), 'HAProxy');
  }

  const token = (role, sub) => spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'token.js'), '--role', role, '--sub', sub], { encoding: 'utf8', env: process.env }).stdout.trim();
  const subscriber = token('authority', 'alice');
  const service = token('service', 'billing');
  const admin = token('admin', 'ops');
  const wsBase = front ? `ws://127.0.0.1:${front}` : `ws://127.0.0.1:${replicas[0].port}`;
  const lines = [
    '',
    `realtime-gateway cluster: ${REPLICAS} replicas on ${redisUrl.replace(/\/\/[^@/]*@/, '//***@')}${front ? `, HAProxy on :${front}` : ' (HAProxy not installed: connect to a replica directly)'}`,
    '',
    ...replicas.map((r) => `  ${r.name}: public http://127.0.0.1:${r.port}   internal http://127.0.0.1:${r.internalPort} (/admin, /metrics, /api/...)`),
    ...(front ? [`  load balancer: ws://127.0.0.1:${front} (the public ports only); HAProxy's log: ${haproxyLog}`] : []),
    '',
    'Subscribe (another terminal):',
    `  npx --yes wscat -c "${wsBase}/api/alerts/subscribe?token=${subscriber}"`,
    'Publish through any replica:',
    `  curl -sS -X POST http://127.0.0.1:${replicas[REPLICAS - 1].internalPort}/api/alerts -H "Authorization: Bearer ${service}" -H 'Content-Type: application/json' -d '{"data":{"text":"hello"}}'`,
    'Watch it:',
    `  http://127.0.0.1:${replicas[0].internalPort}/admin   (admin token: ${admin})`,
    '',
    'The tokens are valid for an hour. Ctrl-C stops everything (the replicas drain first) and removes the temp files.',
  ];
  console.log(lines.join('\n'));
}

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopping = true;
    console.error('\ncluster: stopping');
    stop(0);
  });
}
main().catch((error) => {
  console.error(`cluster: ${error.message}`);
  stopping = true;
  stop(1);
});
