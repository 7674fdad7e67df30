#!/usr/bin/env node
// npm run cluster [-- --replicas N]: a local cluster in one command. A throwaway redis-server (or REDIS_URL if
// set), N replicas (default 3), and HAProxy in front when it is installed, all on free ports; prints the URLs,
// a subscriber token and a publish command; Ctrl-C stops everything. Needs `npm run build` first (the npm
// script does it).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { mkdtempSync, readFileSync, writeFileSync } = require('node:fs');
const net = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const ROOT = join(__dirname, '..');
const args = process.argv.slice(2);
const REPLICAS = Number(args[args.indexOf('--replicas') + 1] || 3) || 3;
const children = [];

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

/** SIGTERM to everything (the replicas drain), then exit once all have: nothing is left behind. */
function stop(code = 0) {
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  const gone = running.map((child) => new Promise((resolve) => child.once('exit', resolve)));
  for (const child of running.reverse()) child.kill('SIGTERM');
  const force = setTimeout(() => {
    for (const child of running) child.kill('SIGKILL');
  }, 15_000);
  void Promise.all(gone).then(() => {
    clearTimeout(force);
    process.exit(code);
  });
}

async function main() {
  // A key for this session unless one is given: tokens below are signed with it, and nothing runs on the
  // public development key.
  process.env.JWT_SECRET ??= randomBytes(32).toString('base64url');
  let redisUrl = process.env.REDIS_URL;
  if (!redisUrl) {
    if (!has('redis-server')) throw new Error('redis-server is not installed (Debian: apt-get install redis-server), or set REDIS_URL');
    const port = await freePort();
    children.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
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
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], { env, stdio: ['ignore', 'inherit', 'inherit'] });
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
    const file = join(mkdtempSync(join(tmpdir(), 'rg-cluster-')), 'haproxy.cfg');
    writeFileSync(file, config);
    children.push(spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'inherit'] }));
    await until(() => answers(front), 'HAProxy');
  }

  const token = (role, sub) => spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'token.js'), '--role', role, '--sub', sub], { encoding: 'utf8', env: process.env }).stdout.trim();
  const subscriber = token('authority', 'alice');
  const service = token('service', 'billing');
  const admin = token('admin', 'ops');
  const wsBase = front ? `ws://127.0.0.1:${front}` : `ws://127.0.0.1:${replicas[0].port}`;
  const lines = [
    '',
    `realtime-gateway cluster: ${REPLICAS} replicas on ${redisUrl}${front ? `, HAProxy on :${front}` : ' (HAProxy not installed: connect to a replica directly)'}`,
    '',
    ...replicas.map((r) => `  ${r.name}: public http://127.0.0.1:${r.port}   internal http://127.0.0.1:${r.internalPort} (/admin, /metrics, /api/...)`),
    ...(front ? [`  load balancer: ws://127.0.0.1:${front} (the public ports only)`] : []),
    '',
    'Subscribe (another terminal):',
    `  npx wscat -c "${wsBase}/api/alerts/subscribe?token=${subscriber}"`,
    'Publish through any replica:',
    `  curl -sS -X POST http://127.0.0.1:${replicas[REPLICAS - 1].internalPort}/api/alerts -H "Authorization: Bearer ${service}" -H 'Content-Type: application/json' -d '{"data":{"text":"hello"}}'`,
    'Watch it:',
    `  http://127.0.0.1:${replicas[0].internalPort}/admin   (admin token: ${admin})`,
    '',
    'Ctrl-C stops everything.',
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
