// Fan-out: deliveries per server CPU-second of ~1 KB messages to N subscribers, single broadcasts and bursts
// of 8, for each peer in interleaved rounds. The server is pinned to core 0, the sink (bench/load/sink.js) to
// core 1. Closed loop: a batch of broadcasts is sent, the sink reports when every frame of it arrived, repeat;
// the server's CPU time over the batches is the cost.
'use strict';
const { spawn } = require('node:child_process');
const { join } = require('node:path');
const jwt = require('jsonwebtoken');

const SECRET = 'bench-secret-bench-secret-bench-secret!!';
const pinned = (core, argv) => (process.platform === 'linux' ? ['taskset', ['-c', String(core), ...argv]] : [argv[0], argv.slice(1)]);

/**
 * Re-runs the calling script pinned to the load core (Linux only) and exits with its status. The runner hosts
 * load-side work (latency subscribers and publisher, slow-consumer probes); unpinned, it competed with the
 * server on core 0. Its children choose their own cores.
 */
function runPinned(core = 1) {
  if (process.platform !== 'linux' || process.env.BENCH_RUNNER_PINNED) return;
  const { spawnSync } = require('node:child_process');
  const argv = [process.execPath, ...process.execArgv, process.argv[1], ...process.argv.slice(2)];
  const result = spawnSync('taskset', ['-c', String(core), ...argv], { stdio: 'inherit', env: { ...process.env, BENCH_RUNNER_PINNED: '1' } });
  process.exit(result.status ?? 1);
}

function freePort() {
  return new Promise((resolve) => {
    const server = require('node:net').createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A throwaway redis-server on a free port, free to run on any core (not the runner's), once it accepts. */
async function startRedis() {
  const port = await freePort();
  const [cmd, rest] = pinned(`0-${require('node:os').cpus().length - 1}`, ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const proc = spawn(cmd, rest, { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const s = require('node:net').connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { proc, url: `redis://127.0.0.1:${port}/0` };
}

function child(core, argv, env = {}) {
  const [cmd, rest] = pinned(core, argv);
  const proc = spawn(cmd, rest, { stdio: ['ignore', process.env.BENCH_CHILD_STDOUT ? 'inherit' : 'ignore', 'inherit', 'ipc'], env: { ...process.env, ...env } });
  const next = (type) =>
    new Promise((resolve, reject) => {
      const on = (msg) => {
        if (msg.type === type) {
          proc.off('message', on);
          proc.off('exit', exit);
          resolve(msg);
        }
      };
      const exit = (code) => reject(new Error(`${argv.slice(-1)[0]} exited with ${code} while waiting for ${type}`));
      proc.on('message', on);
      proc.once('exit', exit);
    });
  return { proc, next, send: (msg) => proc.send(msg) };
}

const PATHS = {
  gateway: (token) => `/api/alerts/subscribe?token=${token}`,
  'gateway-cluster': (token) => `/api/alerts/subscribe?token=${token}`,
  ws: () => '/',
  ws8: () => '/',
  socketio: () => '/socket.io/?EIO=4&transport=websocket',
};

/** A server under test (bench/peers/server.js) pinned to core 0, once it listens. */
async function startServer(peer, redisUrl, core = 0, env = {}) {
  // BENCH_CPU_PROF=<dir>: each server writes a V8 CPU profile there when it is stopped.
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  // BENCH_NODE_FLAGS="--trace-gc …": extra Node flags for each server (with BENCH_CHILD_STDOUT=1 to see what they print).
  const flags = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const server = child(core, [process.execPath, '--expose-gc', ...profile, ...flags, join(__dirname, 'peers', 'server.js'), peer], {
    // LOG_LEVEL blank: the gateway's default level, as production runs it (issue 26).
    JWT_SECRET: SECRET, LOG_LEVEL: '', MAX_UPGRADES_PER_SEC: '0', REDIS_URL: peer === 'gateway' ? '' : redisUrl,
    NODE_ID: `bench-${peer}-${process.hrtime.bigint()}`, ...env,
  });
  const { port, internalPort } = await server.next('ready');
  return { ...server, port, internalPort, kill: () => server.proc.kill(profile.length ? 'SIGINT' : 'SIGKILL') };
}

/**
 * One token per connection, each its own user (`bench-0` …): production's shape. With one user for all, the
 * per-user state (presence, the user index, per-user limits) was paid once instead of per socket, which hid
 * about 1.6 KB of heap per connection and half the broadcast time at 10,000 (issue 26). Written to a file the
 * sink reads (SINK_TOKENS): a URL per socket on the command line would not fit.
 */
function tokensFile(count, prefix = 'bench') {
  const { mkdtempSync, writeFileSync } = require('node:fs');
  const { tmpdir } = require('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'rt-bench-tokens-')), `${prefix}-${count}.json`);
  // A KeyObject: with the string secret jsonwebtoken signs only about 3k tokens/s here (docs/benchmarks.md).
  const key = require('node:crypto').createSecretKey(Buffer.from(SECRET));
  const tokens = Array.from({ length: count }, (_, i) => jwt.sign({ sub: `${prefix}-${i}`, role: 'authority' }, key, { algorithm: 'HS256', expiresIn: 3600 }));
  writeFileSync(file, JSON.stringify(tokens));
  return file;
}

/**
 * The counting sink (bench/load/sink.js) pinned to core 1, with `subscribers` sockets to the server; for the
 * gateway each socket is its own user with its own token (`oneUser`: all one user, the figures recorded before
 * issue 26, for comparison).
 */
async function startSink(peer, port, subscribers, { oneUser = false } = {}) {
  const gateway = peer === 'gateway' || peer === 'gateway-cluster';
  const distinct = gateway && !oneUser;
  const token = distinct ? 'TOKEN' : jwt.sign({ sub: 'bench', role: 'authority' }, SECRET, { expiresIn: 3600 });
  const url = `ws://127.0.0.1:${port}${PATHS[peer](token)}`;
  const env = distinct ? { SINK_TOKENS: tokensFile(subscribers) } : {};
  const sink = child(1, [process.execPath, join(__dirname, 'load', 'sink.js'), url, String(subscribers), peer === 'socketio' ? 'socketio' : 'welcome'], env);
  await sink.next('ready');
  return {
    ...sink,
    async dial() {
      sink.send({ type: 'dial' });
      const dialed = await sink.next('dialed');
      if (dialed.failed) throw new Error(`${peer}: ${dialed.failed} of ${subscribers} sockets failed to open`);
    },
    async close() {
      sink.send({ type: 'close' });
      await sink.next('closed').catch(() => undefined);
    },
  };
}

/**
 * One peer at one size: fresh servers and sinks; single broadcasts, then bursts of 8. With `replicas` > 1 (cluster
 * mode only) the subscribers are split evenly over that many replicas (all on core 0), every message is published
 * on the first, and the cost is the CPU time of all of them: what a delivery costs once the bus is crossed. `env`:
 * the servers' extra environment (bench/webhooks.js turns webhooks on). `oneUser`: every socket the same user
 * (the shape of the figures recorded before issue 26).
 */
async function measureFanout(peer, subscribers, { redisUrl, targetDeliveries, replicas = 1, env = {}, oneUser = false }) {
  if (replicas > 1 && peer !== 'gateway-cluster') throw new Error('several replicas need cluster mode');
  const servers = [];
  const sinks = [];
  const results = {};
  let expected = 0;
  const cpu = async () => {
    let total = 0;
    for (const server of servers) {
      server.send({ type: 'cpu' });
      const { cpu: c } = await server.next('cpu');
      total += c.user + c.system;
    }
    return total / 1e6;
  };
  try {
    for (let i = 0; i < replicas; i++) servers.push(await startServer(peer, redisUrl, 0, env));
    for (const server of servers) sinks.push(await startSink(peer, server.port, subscribers / replicas, { oneUser }));
    for (const sink of sinks) await sink.dial();
    // One broadcast (or one burst) per batch: the next starts only when every frame of this one arrived, so no
    // peer can merge separate broadcasts into one write; a burst's 8 messages are published together.
    for (const [name, burst] of [['single', 1], ['burst8', 8]]) {
      const perBatch = subscribers * burst;
      const batch = async () => {
        expected += burst * (subscribers / replicas);
        for (const sink of sinks) sink.send({ type: 'expect', total: expected, timeoutMs: 60_000 });
        servers[0].send({ type: 'broadcast', count: 1, burst });
        for (const sink of sinks) {
          const got = await sink.next('got');
          if (got.timedOut) throw new Error(`${peer}: not every frame arrived (${name}, ${subscribers} subscribers: ${got.frames} frames)`);
        }
      };
      for (let w = 0; w < 3; w++) await batch(); // warm-up
      const batches = Math.max(3, Math.ceil(targetDeliveries / perBatch));
      const before = await cpu();
      const t0 = process.hrtime.bigint();
      for (let b = 0; b < batches; b++) await batch();
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpuSeconds = (await cpu()) - before;
      const deliveries = perBatch * batches;
      results[name] = { perCpuSec: deliveries / cpuSeconds, perSec: deliveries / seconds, messages: batches * burst };
    }
  } finally {
    for (const sink of sinks) await sink.close();
    for (const server of servers) server.kill();
  }
  return results;
}

module.exports = { measureFanout, startServer, startSink, runPinned, startRedis, tokensFile, SECRET };
