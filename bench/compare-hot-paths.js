#!/usr/bin/env node
// Before/after of the gateway's hot HTTP paths between two checkouts of this repository, each built (dist/):
//   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci && npm run build)
//   node bench/compare-hot-paths.js /tmp/before .
// Alternating rounds (A B A B ...), gateway in embedded mode on core 0, load on core 1:
// - upgrades per server CPU-second: 5,000 JWT-verified upgrades on a running server (after 2,000 warm-up ones);
// - server CPU per POST /api/alerts: 20,000 publishes over 16 keep-alive connections (after 2,000 warm-up),
//   on whichever port serves the server API in that checkout (the internal one since issue 16).
'use strict';
const path = require('node:path');
const http = require('node:http');
const jwt = require('jsonwebtoken');
const { runPinned } = require('./fanout');

const ROUNDS = 3;
const SOCKETS = 5000;
const POSTS = 20_000;
const CONCURRENCY = 16;

async function upgrades(root) {
  const { startServer, startSink } = require(path.join(root, 'bench', 'fanout.js'));
  const server = await startServer('gateway', '');
  const cpu = async () => {
    server.send({ type: 'cpu' });
    const c = (await server.next('cpu')).cpu;
    return (c.user + c.system) / 1e6;
  };
  try {
    const warm = await startSink('gateway', server.port, 2000);
    await warm.dial();
    await warm.close();
    for (;;) {
      server.send({ type: 'open' });
      if ((await server.next('open')).count === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20)); // poll: the server sees the resets soon after
    }
    const sink = await startSink('gateway', server.port, SOCKETS);
    const before = await cpu();
    await sink.dial();
    const used = (await cpu()) - before;
    await sink.close();
    return SOCKETS / used;
  } finally {
    server.kill();
  }
}

async function posts(root) {
  const { startServer, SECRET } = require(path.join(root, 'bench', 'fanout.js'));
  const server = await startServer('gateway', '');
  const port = server.internalPort ?? server.port;
  const token = jwt.sign({ sub: 'svc', role: 'service' }, SECRET, { expiresIn: 3600 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const body = JSON.stringify({ data: { level: 'red', text: 'x'.repeat(200) } });
  const post = () =>
    new Promise((resolve, reject) => {
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      const req = http.request({ host: '127.0.0.1', port, path: '/api/alerts', method: 'POST', agent, headers }, (res) => {
        if (res.statusCode !== 202) reject(new Error(`POST /api/alerts answered ${res.statusCode}`));
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end(body);
    });
  const burst = async (count) => {
    let left = count;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (left-- > 0) await post();
    }));
  };
  const cpu = async () => {
    server.send({ type: 'cpu' });
    const c = (await server.next('cpu')).cpu;
    return c.user + c.system;
  };
  try {
    await burst(2000);
    const before = await cpu();
    await burst(POSTS);
    return ((await cpu()) - before) / POSTS;
  } finally {
    agent.destroy();
    server.kill();
  }
}

async function main() {
  const [a, b] = process.argv.slice(2).map((p) => path.resolve(p));
  if (!a || !b) throw new Error('usage: node bench/compare-hot-paths.js <before checkout> <after checkout>');
  const results = { upgradesPerCpuSec: { before: [], after: [] }, usPerPost: { before: [], after: [] } };
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [name, root] of [['before', a], ['after', b]]) {
      results.upgradesPerCpuSec[name].push(await upgrades(root));
      results.usPerPost[name].push(await posts(root));
      console.error(`round ${r}/${ROUNDS} ${name}: ${Math.round(results.upgradesPerCpuSec[name].at(-1))} upgrades/CPU-s, ${results.usPerPost[name].at(-1).toFixed(1)} µs CPU per POST`);
    }
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
  for (const [measure, { before, after }] of Object.entries(results)) {
    console.log(`${measure}: before ${before.map((x) => x.toFixed(1)).join(', ')}; after ${after.map((x) => x.toFixed(1)).join(', ')}; after/before (medians) ${(median(after) / median(before)).toFixed(2)}`);
  }
}

runPinned(1);
main().then(() => process.exit(0), (error) => {
  console.error(`compare-hot-paths: ${error.message}`);
  process.exit(1);
});
