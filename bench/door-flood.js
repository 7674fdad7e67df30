// Pressure from strangers: one address floods tokenless upgrades as fast as the load core can make them, while
// 100 legitimate clients from 100 other addresses (127.0.1.x: Linux routes all of 127/8 to loopback) connect
// with valid tokens. Reports whether all 100 got in, what the flood got, and the server's CPU per refused upgrade,
// with MAX_UPGRADES_PER_IP_PER_SEC on (429 before any token work) and off (each flood request reaches the token
// check: 401). Server on core 0, load on core 1.
//   node bench/door-flood.js            (npm run bench runs it too)
'use strict';
const net = require('node:net');
const jwt = require('jsonwebtoken');
const WebSocket = require('ws');
const { startServer, runPinned, SECRET } = require('./fanout');

const FLOOD_SECONDS = Number(process.env.BENCH_FLOOD_SECONDS || 5);
const CONCURRENCY = 64;
const USERS = 100;
const REQUEST = 'GET /api/alerts/subscribe HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

/** One flood lane: connect from `from`, send the request, read the status line, repeat until `until`. */
function lane(port, from, until, statuses) {
  return new Promise((resolve) => {
    const next = () => {
      if (Date.now() >= until) return resolve();
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => socket.write(REQUEST));
      let head = '';
      let counted = false;
      socket.setEncoding('latin1');
      socket.on('data', (chunk) => {
        head += chunk;
        if (!counted && head.includes('\r\n')) {
          counted = true;
          const status = head.split(' ')[1];
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          socket.destroy();
        }
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        if (!counted) statuses.set('reset', (statuses.get('reset') ?? 0) + 1);
        setImmediate(next);
      });
    };
    next();
  });
}

/** A legitimate user from its own address: resolves with 'open' or the refusal status. */
function user(port, i) {
  const token = jwt.sign({ sub: `user${i}`, role: 'authority' }, SECRET, { expiresIn: 600 });
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/alerts/subscribe`, ['bearer', token], { localAddress: `127.0.1.${i + 1}` });
    ws.on('open', () => {
      resolve('open');
      ws.close();
    });
    ws.on('unexpected-response', (req, res) => {
      resolve(String(res.statusCode));
      req.destroy();
    });
    ws.on('error', (error) => resolve(`error ${error.code ?? error.message}`));
  });
}

async function scenario(name, env) {
  const server = await startServer('gateway', '', 0, { MAX_UPGRADES_PER_SEC: '1000', LOG_LEVEL: 'warn', ...env });
  try {
    const statuses = new Map();
    server.send({ type: 'cpu' });
    const before = (await server.next('cpu')).cpu;
    const started = Date.now();
    const until = started + FLOOD_SECONDS * 1000;
    const flood = Promise.all(Array.from({ length: CONCURRENCY }, () => lane(server.port, '127.0.0.66', until, statuses)));
    // Users arrive spread over the flood (not all in its first millisecond).
    const users = Promise.all(
      Array.from({ length: USERS }, (_, i) => new Promise((r) => setTimeout(r, (i * (FLOOD_SECONDS - 1) * 1000) / USERS)).then(() => user(server.port, i))),
    );
    const [outcomes] = await Promise.all([users, flood]);
    const seconds = (Date.now() - started) / 1000;
    server.send({ type: 'cpu' });
    const after = (await server.next('cpu')).cpu;
    const cpuSeconds = (after.user + after.system - before.user - before.system) / 1e6;
    const refused = [...statuses.entries()].filter(([s]) => s !== '101' && s !== 'reset').reduce((n, [, c]) => n + c, 0);
    const admitted = outcomes.filter((o) => o === 'open').length;
    return {
      name,
      floodPerSec: refused / seconds,
      statuses: Object.fromEntries(statuses),
      usersIn: admitted,
      userFailures: outcomes.filter((o) => o !== 'open'),
      serverCpuShare: cpuSeconds / seconds,
      usPerRefused: (cpuSeconds * 1e6) / refused,
    };
  } finally {
    server.kill();
  }
}

async function main() {
  const results = [];
  for (const [name, env] of [
    ['per-address limit on (MAX_UPGRADES_PER_IP_PER_SEC=20)', { MAX_UPGRADES_PER_IP_PER_SEC: '20' }],
    ['per-address limit off', { MAX_UPGRADES_PER_IP_PER_SEC: '0' }],
  ]) {
    process.stderr.write(`  door flood: ${name}… `);
    const r = await scenario(name, env);
    console.error(`${Math.round(r.floodPerSec)} refused/s, ${r.usersIn}/${USERS} users in, ${r.usPerRefused.toFixed(1)} µs server CPU per refusal`);
    results.push(r);
  }
  return results;
}

module.exports = { main };
if (require.main === module) {
  runPinned();
  main().then((results) => {
    console.log('| scenario | flood refused/s | flood answers | users in | server CPU busy | server CPU per refused upgrade |');
    console.log('|---|---|---|---|---|---|');
    for (const r of results) {
      console.log(`| ${r.name} | ${Math.round(r.floodPerSec)} | ${JSON.stringify(r.statuses)} | ${r.usersIn}/${USERS}${r.userFailures.length ? ` (${r.userFailures.join(', ')})` : ''} | ${(r.serverCpuShare * 100).toFixed(0)}% | ${r.usPerRefused.toFixed(1)} µs |`);
    }
    process.exit(0);
  });
}
