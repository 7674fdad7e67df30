#!/usr/bin/env node
// npm run bench:scale [-- --connections N] [-- --write] [-- --rounds R] [-- --idle-seconds 30] [-- --rate-seconds 30]
//   [-- --rate 10] [-- --clients C] [-- --peers ws,gateway,socketio] [-- --out file.json]
// node bench/scale.js --render figures.json [--write]: the tables (and docs) again from a run's saved figures.
// As many connections to one server process as the open-files limit allows, each its own user with its own token
// (issue 26): the gateway (G, embedded, its default log level), bare `ws` sending the same welcome frame (W) and
// Socket.IO 4.8 (S), one after the other in each round, on the same machine state. The soft open-files limit is
// raised to the hard one in every process (Node cannot call setrlimit: each is started through
// `sh -c 'ulimit -n …; exec …'`) and the run says what it got; N defaults to that limit less FD_RESERVE.
// The server is pinned to core 0; C client processes (bench/load/scale-client.js) to the other cores, their
// sockets spread over 8 source addresses 127.0.0.2–9 (about 28k ephemeral ports each).
// Per peer and round: connect rate and server CPU per connection (/proc/<pid>/stat); idle RSS and heap per
// connection after two full GCs, and the kernel's TCP memory (/proc/net/sockstat, both ends of each loopback
// connection); idle CPU over --idle-seconds with the default heartbeats; one 1 KB broadcast to all (warm-up, then
// measured: time to the last socket, p50/p99 per socket, server CPU per delivery); --rate broadcasts a second for
// --rate-seconds; G only: a SIGTERM drain with every client reconnecting to a second replica by the SDK's policy.
// --write: the `scale` section of docs/bench-results.json, the table in docs/benchmarks.md, the charts.
// Every process it starts is in its own process group, killed in `finally` and on SIGINT/SIGTERM.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { readFileSync, writeFileSync, mkdtempSync, rmSync, appendFileSync } = require('node:fs');
const { cpus, totalmem, tmpdir, loadavg } = require('node:os');
const { join } = require('node:path');
const jwt = require('jsonwebtoken');

const ROOT = join(__dirname, '..');
const SECRET = 'bench-secret-bench-secret-bench-secret!!';
/** Descriptors a server process needs besides its sockets: stdio, IPC, the listeners, libuv, Redis (S). */
const FD_RESERVE = 300;
/** A client process holds at most this many connections (its handshakes in flight: 200). */
const PER_CLIENT = 5000;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
const PAGE = Number(execFileSync('getconf', ['PAGESIZE']).toString()) || 4096;

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : process.argv[i + 1];
}
const WRITE = process.argv.includes('--write');
const ROUNDS = Number(option('rounds', 1));
const IDLE_SECONDS = Number(option('idle-seconds', 30));
const RATE = Number(option('rate', 10));
const RATE_SECONDS = Number(option('rate-seconds', 30));
const PEERS = option('peers', 'ws,gateway,socketio').split(',');

const processes = new Set(); // every child, by pid: its process group is killed at the end
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What this machine lets a process hold: the limits the run raises or reports. */
function limits() {
  const sh = (script) => execFileSync('sh', ['-c', script]).toString().trim();
  const read = (file) => {
    try {
      return readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    } catch {
      return undefined;
    }
  };
  return {
    nofileSoftBefore: Number(sh('ulimit -n')),
    nofileHard: sh('ulimit -Hn'),
    // What a child started through the same `sh -c` gets: the hard limit, unless it is unlimited.
    nofile: Number(sh('ulimit -n "$(ulimit -Hn)" 2>/dev/null; ulimit -n')),
    somaxconn: read('/proc/sys/net/core/somaxconn')?.[0],
    ipLocalPortRange: read('/proc/sys/net/ipv4/ip_local_port_range'),
    tcpMemPages: read('/proc/sys/net/ipv4/tcp_mem'),
    fileMax: read('/proc/sys/fs/file-max')?.[0],
  };
}

/**
 * Starts `argv` with the soft open-files limit raised to the hard one, pinned to `cores`, in its own process
 * group, with an IPC channel. `exec` keeps the pid: /proc/<pid>/stat is node's own.
 */
function start(argv, { cores, env = {} }) {
  const pin = process.platform === 'linux' ? ['taskset', '-c', cores] : [];
  const proc = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...pin, ...argv], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  processes.add(proc);
  // SCALE_PIDS_FILE: every process group this run starts, one pid a line (test/e2e/bench-scale.e2e.ts checks none
  // outlives the run).
  if (process.env.SCALE_PIDS_FILE) appendFileSync(process.env.SCALE_PIDS_FILE, `${proc.pid}\n`);
  proc.once('exit', () => processes.delete(proc));
  const next = (type, timeoutMs = 600_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => (cleanup(), reject(new Error(`${argv[argv.length - 1]}: no ${type} in ${timeoutMs} ms`))), timeoutMs);
      const on = (msg) => msg.type === type && (cleanup(), resolve(msg));
      const exit = (code) => (cleanup(), reject(new Error(`${argv.slice(-4).join(' ')} exited (${code}) while waiting for ${type}`)));
      const cleanup = () => (clearTimeout(timer), proc.off('message', on), proc.off('exit', exit));
      proc.on('message', on);
      proc.once('exit', exit);
    });
  return { proc, pid: proc.pid, next, send: (msg) => proc.connected && proc.send(msg) };
}

function killAll() {
  for (const proc of processes) {
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** CPU seconds (user + system, all threads) of a process so far, from /proc/<pid>/stat (CLK_TCK ticks). */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime: fields 14 and 15
}

/** The kernel's TCP memory in bytes (sockstat `mem`, pages; the machine's, both ends of loopback sockets). */
function tcpMemory() {
  const line = readFileSync('/proc/net/sockstat', 'utf8').split('\n').find((l) => l.startsWith('TCP:'));
  const field = (name) => Number(new RegExp(`${name} (\\d+)`).exec(line)[1]);
  return { bytes: field('mem') * PAGE, inuse: field('inuse') };
}

/**
 * The kernel's slab memory held by sockets, in bytes: the caches every TCP socket takes an object from (its
 * tcp_sock, its socket inode, its file, its epoll entry). Machine-wide and both ends of each loopback connection;
 * read as a delta. The socket's dentry (192 B) is left out: the dentry cache moves with every file any process
 * touches, so its delta would be the other processes' noise.
 */
const SOCKET_SLABS = ['TCP', 'sock_inode_cache', 'filp', 'eventpoll_epi'];
function socketSlabBytes() {
  try {
    let bytes = 0;
    for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n')) {
      const f = line.split(/\s+/);
      if (SOCKET_SLABS.includes(f[0])) bytes += Number(f[1]) * Number(f[3]); // active objects × object size
    }
    return bytes;
  } catch {
    return NaN; // /proc/slabinfo is root-only on most systems
  }
}

function freePort() {
  return new Promise((resolve) => {
    const server = require('node:net').createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const redis = start(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { cores: `0-${cpus().length - 1}` });
  redis.proc.removeAllListeners('message');
  for (let i = 0; i < 250; i++) {
    const up = await new Promise((resolve) => {
      const s = require('node:net').connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    await sleep(20);
  }
  return { ...redis, url: `redis://127.0.0.1:${port}/0` };
}

async function startServer(peer, redisUrl, env = {}) {
  const server = start([process.execPath, '--expose-gc', join(__dirname, 'peers', 'server.js'), peer], {
    cores: '0',
    env: {
      JWT_SECRET: SECRET,
      LOG_LEVEL: '', // the gateway's default level, as production runs it
      MAX_UPGRADES_PER_SEC: '0', // the connect rate is measured, not the door's limit
      REDIS_URL: peer === 'socketio' ? redisUrl : '',
      NODE_ID: `scale-${peer}-${process.hrtime.bigint()}`,
      ...env,
    },
  });
  const { port } = await server.next('ready', 60_000);
  const ask = async (type) => {
    server.send({ type });
    return server.next(type, 120_000);
  };
  return { ...server, port, ask };
}

const clientCores = () => (cpus().length > 1 ? `1-${cpus().length - 1}` : '0');

/** Client processes holding `n` connections between them, ready to dial. */
async function startClients(peer, port, n, tokensFile, clientCount) {
  const clients = [];
  const per = Math.ceil(n / clientCount);
  for (let first = 0; first < n; first += per) {
    const c = start([process.execPath, join(__dirname, 'load', 'scale-client.js'), peer, String(port), String(first), String(Math.min(per, n - first))], {
      cores: clientCores(),
      env: peer === 'gateway' ? { SCALE_TOKENS: tokensFile } : {},
    });
    clients.push(c);
  }
  await Promise.all(clients.map((c) => c.next('ready', 60_000)));
  return clients;
}

const all = (clients, msg, reply, timeoutMs) => Promise.all(clients.map((c) => (c.send(msg), c.next(reply, timeoutMs))));

/** Percentiles of merged sparse 0.1 ms histograms. */
function percentiles(histograms) {
  const merged = new Map();
  for (const h of histograms) for (const [b, n] of h) merged.set(b, (merged.get(b) ?? 0) + n);
  const buckets = [...merged.entries()].sort((a, b) => a[0] - b[0]);
  const total = buckets.reduce((s, [, n]) => s + n, 0);
  const at = (p) => {
    const rank = Math.max(1, Math.ceil(p * total));
    let seen = 0;
    for (const [b, n] of buckets) if ((seen += n) >= rank) return b / 10;
    return NaN;
  };
  return { count: total, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: buckets.length ? buckets[buckets.length - 1][0] / 10 : NaN };
}

/**
 * Broadcasts `count` 1 KB messages, one every `intervalMs` from a start both sides know; each socket times its
 * k-th frame from when broadcast k was due. Resolves once every socket got them all (or at the timeout).
 */
async function broadcasts(server, clients, n, count, intervalMs, timeoutMs) {
  const startAt = now() + 300;
  await all(clients, { type: 'mark', startAt, count, intervalMs, timeoutMs }, 'marked');
  const waiting = clients.map((c) => c.next('got', timeoutMs + 10_000));
  const cpu0 = cpuSeconds(server.pid);
  server.send({ type: 'schedule', startAt, count, intervalMs });
  const got = await Promise.all(waiting);
  const wall = (now() - startAt) / 1000;
  const cpu = cpuSeconds(server.pid) - cpu0;
  const deliveries = got.reduce((s, g) => s + g.frames, 0);
  const lat = percentiles(got.map((g) => g.histogram));
  return {
    broadcasts: count,
    expected: count * n,
    deliveries,
    socketsComplete: got.reduce((s, g) => s + g.socketsComplete, 0),
    // Connections the server closed so far outside a drain, by close code (G: 1013 too slow to read).
    closedByServer: got.reduce((acc, g) => { for (const [k, v] of Object.entries(g.lost ?? {})) acc[k] = (acc[k] ?? 0) + v; return acc; }, {}),
    complete: got.every((g) => g.complete),
    p50Ms: lat.p50,
    p99Ms: lat.p99,
    p999Ms: lat.p999,
    lastMs: lat.max,
    wallSeconds: wall,
    serverCpuSeconds: cpu,
    cpuUsPerDelivery: deliveries ? (cpu / deliveries) * 1e6 : NaN,
    serverCoreShare: cpu / wall,
  };
}

/** Counts per `binMs` from 0 to the last value. */
const bins = (times, binMs) => {
  const out = [];
  for (const t of times) {
    const b = Math.max(0, Math.floor(t / binMs));
    while (out.length <= b) out.push(0);
    out[b]++;
  }
  return out;
};
const quantile = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

/** G only: SIGTERM, the product's drain (1012 spread over DRAIN_WINDOW_MS), every client back on a second replica. */
async function drainToSurvivor(server, clients, n) {
  // The other replica as production runs it: the door's default MAX_UPGRADES_PER_SEC (1,000/s) included.
  const survivor = await startServer('gateway', '', { MAX_UPGRADES_PER_SEC: '' });
  try {
    const t0 = now() + 100;
    const timeoutMs = 180_000;
    await all(clients, { type: 'drain', port: survivor.port, t0, timeoutMs }, 'draining');
    const waiting = clients.map((c) => c.next('drained', timeoutMs + 10_000));
    const exited = new Promise((resolve) => server.proc.once('exit', () => resolve(now() - t0)));
    await sleep(Math.max(0, t0 - now()));
    process.kill(server.pid, 'SIGTERM');
    const got = await Promise.all(waiting);
    const exitMs = await Promise.race([exited, sleep(30_000).then(() => NaN)]);
    const closes = got.flatMap((g) => g.closes);
    const reconnects = got.flatMap((g) => g.reconnects);
    const sum = (key) => got.reduce((acc, g) => { for (const [k, v] of Object.entries(g[key])) acc[k] = (acc[k] ?? 0) + v; return acc; }, {});
    survivor.send({ type: 'open' });
    const onSurvivor = (await survivor.next('open')).count;
    return {
      sockets: n,
      complete: got.every((g) => g.complete),
      closeCodes: sum('codes'),
      refusedReconnects: sum('refused'),
      firstCloseMs: quantile(closes, 0),
      lastCloseMs: quantile(closes, 1),
      reconnectedP50Ms: quantile(reconnects, 0.5),
      reconnectedP99Ms: quantile(reconnects, 0.99),
      lastReconnectMs: quantile(reconnects, 1),
      reconnected: reconnects.length,
      onSurvivor,
      exitAfterMs: exitMs,
      binMs: 500,
      closesPerBin: bins(closes, 500),
      reconnectsPerBin: bins(reconnects, 500),
    };
  } finally {
    try {
      process.kill(-survivor.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function measurePeer(peer, n, { redisUrl, tokensFile, clientCount }) {
  const server = await startServer(peer, redisUrl);
  let clients = [];
  try {
    const before = await server.ask('memory');
    const tcpBefore = tcpMemory();
    const slabBefore = socketSlabBytes();
    clients = await startClients(peer, server.port, n, tokensFile, clientCount);
    const cpu0 = cpuSeconds(server.pid);
    const t0 = now();
    const dialed = await all(clients, { type: 'dial' }, 'dialed');
    const connectSeconds = (now() - t0) / 1000;
    const connectCpu = cpuSeconds(server.pid) - cpu0;
    const open = dialed.reduce((s, d) => s + d.open, 0);
    const failed = dialed.reduce((s, d) => s + d.failed, 0);
    const reasons = {};
    for (const d of dialed) for (const [k, v] of Object.entries(d.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
    const why = Object.entries(reasons).map(([k, v]) => `${k}: ${v}`).join(', ');
    if (failed) throw new Error(`${peer}: ${failed} of ${n} connections failed to open after retries (${why}); check the limits in docs/deploy.md`);
    await sleep(500); // the last handshakes' garbage and buffers settle before the GCs
    const after = await server.ask('memory');
    const tcpAfter = tcpMemory();
    const slabAfter = socketSlabBytes();
    const result = {
      connections: open,
      connectPerSec: open / connectSeconds,
      connectSeconds,
      // Handshakes refused or reset and tried again (a loaded machine's accept queue overflows), with the reasons.
      connectRetries: dialed.reduce((s, d) => s + d.retries, 0),
      connectRetryReasons: reasons,
      upgradesPerCpuSec: open / connectCpu,
      cpuUsPerConnection: (connectCpu / open) * 1e6,
      rssPerConn: (after.rss - before.rss) / open,
      heapPerConn: (after.heapUsed - before.heapUsed) / open,
      rssMB: after.rss / 2 ** 20,
      kernelTcpPerConn: (tcpAfter.bytes - tcpBefore.bytes) / open,
      kernelSlabPerConn: (slabAfter - slabBefore) / open,
    };
    process.stderr.write(`${Math.round(result.connectPerSec)}/s, ${Math.round(result.upgradesPerCpuSec)} per CPU-s, ${(result.rssPerConn / 1024).toFixed(2)} KB RSS/conn; idle ${IDLE_SECONDS} s… `);

    const idle0 = cpuSeconds(server.pid);
    const i0 = now();
    await sleep(IDLE_SECONDS * 1000);
    result.idleCoreShare = (cpuSeconds(server.pid) - idle0) / ((now() - i0) / 1000);
    result.idleCoreShareAt20k = (result.idleCoreShare * 20_000) / open;

    process.stderr.write('broadcast… ');
    await broadcasts(server, clients, open, 1, 0, 60_000); // warm-up: the first broadcast pays the JIT
    result.broadcast = await broadcasts(server, clients, open, 1, 0, 60_000);
    process.stderr.write(`${result.broadcast.lastMs.toFixed(0)} ms to the last; ${RATE}/s for ${RATE_SECONDS} s… `);
    const count = Math.max(1, Math.round(RATE * RATE_SECONDS));
    // A frame not there 15 s after the last was due counts as not delivered: overload shows as a share, and the
    // phase stays bounded (10 minutes for the run).
    result.rate = await broadcasts(server, clients, open, count, 1000 / RATE, RATE_SECONDS * 1000 + 15_000);
    result.rate.perSecond = RATE;
    process.stderr.write(`${(result.rate.deliveries / result.rate.expected * 100).toFixed(1)}% delivered, p99 ${result.rate.p99Ms.toFixed(0)} ms`);
    if (peer === 'gateway') {
      process.stderr.write('; drain… ');
      result.drain = await drainToSurvivor(server, clients, open);
      process.stderr.write(`all back ${(result.drain.lastReconnectMs / 1000).toFixed(1)} s after SIGTERM`);
    }
    console.error('');
    return result;
  } finally {
    await Promise.all(clients.map((c) => (c.send({ type: 'close' }), c.next('closed', 10_000).catch(() => undefined))));
    for (const c of [server, ...clients]) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Issue 26's targets, each a ratio in this run (medians over rounds). */
function targets(peers) {
  const m = (peer, f) => median((peers[peer] ?? []).map(f));
  const rows = [];
  const add = (name, value, goal, pass, detail) => rows.push({ name, value, goal, met: Number.isFinite(value) ? pass : undefined, detail });
  const rssG = m('gateway', (r) => r.rssPerConn);
  const rssW = m('ws', (r) => r.rssPerConn);
  add('idle RSS per connection, G/W', rssG / rssW, '≤ 1.3', rssG / rssW <= 1.3, `${(rssG / 1024).toFixed(2)} KB against ${(rssW / 1024).toFixed(2)} KB`);
  add('idle RSS per connection, G (KB)', rssG / 1024, '≤ 5', rssG / 1024 <= 5, `${(rssG / 1024).toFixed(2)} KB`);
  const upG = m('gateway', (r) => r.upgradesPerCpuSec);
  const upW = m('ws', (r) => r.upgradesPerCpuSec);
  add('upgrades per server CPU-second, G/W (fresh token each, welcome on both)', upG / upW, '≥ 0.7', upG / upW >= 0.7, `${Math.round(upG)} against ${Math.round(upW)}`);
  const lastG = m('gateway', (r) => r.broadcast.lastMs);
  const lastW = m('ws', (r) => r.broadcast.lastMs);
  add('one 1 KB broadcast, time to the last socket, G/W', lastG / lastW, '≤ 1.15', lastG / lastW <= 1.15, `${lastG.toFixed(0)} ms against ${lastW.toFixed(0)} ms`);
  const idle = m('gateway', (r) => r.idleCoreShareAt20k);
  add('heartbeats at 20,000 idle, share of a core (G)', idle * 100, '≤ 5 %', idle <= 0.05, `${(idle * 100).toFixed(2)} % (measured ${(m('gateway', (r) => r.idleCoreShare) * 100).toFixed(2)} % at ${m('gateway', (r) => r.connections)}, scaled linearly)`);
  return rows;
}

function table(scale) {
  const { peers } = scale;
  const names = { ws: 'W', gateway: 'G', socketio: 'S' };
  const order = ['ws', 'gateway', 'socketio'].filter((p) => peers[p]);
  const perRound = (peer, f, digits = 0) => {
    const xs = peers[peer].map(f);
    const fmt = (x) => (Number.isFinite(x) ? x.toFixed(digits) : '—');
    return xs.length > 1 ? `${fmt(median(xs))} (${xs.map(fmt).join(', ')})` : fmt(xs[0]);
  };
  const ratio = (peer, ref, f) => {
    if (!peers[peer] || !peers[ref]) return '—';
    const r = median(peers[peer].map(f)) / median(peers[ref].map(f));
    return Number.isFinite(r) ? r.toFixed(2) : '—';
  };
  const rows = [
    ['connect rate (handshakes/s, 200 in flight per client process)', (r) => r.connectPerSec, 0],
    ['upgrades per server CPU-second', (r) => r.upgradesPerCpuSec, 0],
    ['server CPU per connection (µs)', (r) => r.cpuUsPerConnection, 0],
    ['idle RSS per connection after full GCs (KB)', (r) => r.rssPerConn / 1024, 2],
    ['idle heap per connection after full GCs (KB)', (r) => r.heapPerConn / 1024, 2],
    ['kernel socket buffers per idle connection, both ends (KB, /proc/net/sockstat `mem`)', (r) => r.kernelTcpPerConn / 1024, 2],
    ['kernel slab per connection, both ends (KB: tcp_sock, inode, file, epoll entry; /proc/slabinfo)', (r) => r.kernelSlabPerConn / 1024, 2],
    ['server RSS with all connections (MB)', (r) => r.rssMB, 0],
    [`idle CPU, default heartbeats, over ${scale.idleSeconds} s (% of a core)`, (r) => r.idleCoreShare * 100, 2],
    ['one 1 KB broadcast: time to the last socket (ms)', (r) => r.broadcast.lastMs, 1],
    ['one 1 KB broadcast: p50 / p99 per socket (ms)', (r) => r.broadcast.p50Ms, 1, (r) => r.broadcast.p99Ms],
    ['one 1 KB broadcast: server CPU per delivery (µs)', (r) => r.broadcast.cpuUsPerDelivery, 2],
    [`${scale.rate}/s for ${scale.rateSeconds} s: delivered (%)`, (r) => (r.rate.deliveries / r.rate.expected) * 100, 1],
    [`${scale.rate}/s for ${scale.rateSeconds} s: p50 / p99 per frame (ms)`, (r) => r.rate.p50Ms, 1, (r) => r.rate.p99Ms],
    [`${scale.rate}/s for ${scale.rateSeconds} s: server core busy (%)`, (r) => r.rate.serverCoreShare * 100, 0],
    [`${scale.rate}/s for ${scale.rateSeconds} s: server CPU per delivery (µs)`, (r) => r.rate.cpuUsPerDelivery, 2],
  ];
  const lines = [
    `| ${scale.connections.toLocaleString('en')} connections, each its own user${scale.rounds > 1 ? '; median (per round)' : ''} | ${order.map((p) => names[p]).join(' | ')} | G/W | G/S |`,
    `|---|${order.map(() => '---|').join('')}---|---|`,
  ];
  for (const [label, f, digits, second] of rows) {
    const cells = order.map((p) => (second ? `${perRound(p, f, digits)} / ${perRound(p, second, digits)}` : perRound(p, f, digits)));
    lines.push(`| ${label} | ${cells.join(' | ')} | ${ratio('gateway', 'ws', f)} | ${ratio('gateway', 'socketio', f)} |`);
  }
  const retried = order.map((p) => {
    const rounds = peers[p];
    const reasons = {};
    for (const r of rounds) for (const [k, v] of Object.entries(r.connectRetryReasons ?? {})) reasons[k] = (reasons[k] ?? 0) + v;
    const why = Object.entries(reasons).map(([k, v]) => `${k}: ${v}`).join(', ');
    return `${names[p]} ${rounds.map((r) => r.connectRetries ?? 0).join(', ')}${why ? ` (${why})` : ''}`;
  });
  lines.push('');
  lines.push(`Handshakes refused or reset during the dial and tried again (every connection opened in the end): ${retried.join('; ')}.`);
  const closedBy = order.map((p) => {
    const codes = peers[p].at(-1).rate.closedByServer ?? {};
    const text = Object.entries(codes).map(([k, v]) => `${k}: ${v}`).join(', ');
    return `${names[p]} ${text || 'none'}`;
  });
  lines.push(`Connections the server closed before the drain (close code: count, last round): ${closedBy.join('; ')}.`);
  const out = [lines.join('\n')];
  const g = peers.gateway?.find((r) => r.drain)?.drain;
  if (g) {
    out.push(
      [
        '| G drained (SIGTERM), every client back on a second replica by the SDK\'s policy | value |',
        '|---|---|',
        `| close codes | ${Object.entries(g.closeCodes).map(([c, k]) => `${c}: ${k}`).join(', ')} |`,
        `| closes from first to last (ms after SIGTERM) | ${g.firstCloseMs.toFixed(0)} – ${g.lastCloseMs.toFixed(0)} |`,
        `| reconnected: p50 / p99 / last (ms after SIGTERM) | ${g.reconnectedP50Ms.toFixed(0)} / ${g.reconnectedP99Ms.toFixed(0)} / ${g.lastReconnectMs.toFixed(0)} (${g.reconnected} of ${g.sockets}; ${g.onSurvivor} on the survivor) |`,
        // Runs before the reasons were recorded keyed a reset by status 0.
        `| reconnect attempts refused or reset by the survivor (its door at the default MAX_UPGRADES_PER_SEC), tried again by the SDK's policy | ${Object.entries(g.refusedReconnects).map(([c, k]) => `${c === '0' ? 'reset before an answer' : /^\d+$/.test(c) ? `HTTP ${c}` : c}: ${k}`).join(', ') || 'none'} |`,
        `| reconnects per ${g.binMs} ms | ${g.reconnectsPerBin.join(' ')} |`,
        `| closes per ${g.binMs} ms | ${g.closesPerBin.join(' ')} |`,
        `| drained process exited after (ms) | ${Number.isFinite(g.exitAfterMs) ? g.exitAfterMs.toFixed(0) : '—'} |`,
      ].join('\n'),
    );
  }
  out.push(
    [
      '| issue 26 target (same run, distinct users) | goal | measured | met | detail |',
      '|---|---|---|---|---|',
      ...scale.targets.map((t) => `| ${t.name} | ${t.goal} | ${Number.isFinite(t.value) ? t.value.toFixed(2) : '—'} | ${t.met === undefined ? '—' : t.met ? 'yes' : '**no**'} | ${t.detail} |`),
    ].join('\n'),
  );
  return out.join('\n\n');
}

async function main() {
  const began = Date.now();
  const lim = limits();
  const hardRoom = Math.max(100, lim.nofile - FD_RESERVE);
  const n = Number(option('connections', hardRoom));
  const clientCount = Number(option('clients', Math.max(2, Math.ceil(n / PER_CLIENT))));
  const addresses = Number(process.env.SCALE_ADDRESSES || 8);
  console.error(
    `bench:scale: open files soft ${lim.nofileSoftBefore} -> ${lim.nofile} (hard ${lim.nofileHard}); ${n.toLocaleString('en')} connections per server` +
      `${n > hardRoom ? ` (more than the limit allows: ${hardRoom}; expect failures)` : ''}, ${clientCount} client processes, ${addresses} source addresses; ` +
      `somaxconn ${lim.somaxconn}, ports ${lim.ipLocalPortRange?.join('–')}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'rt-scale-'));
  const tokensFile = join(dir, 'tokens.json');
  // One token per connection, each its own user: what production's upgrades verify.
  // A KeyObject: jsonwebtoken with a string secret signs about 3k/s here (docs/benchmarks.md), 100k tokens 30 s.
  const key = require('node:crypto').createSecretKey(Buffer.from(SECRET));
  writeFileSync(tokensFile, JSON.stringify(Array.from({ length: n }, (_, i) => jwt.sign({ sub: `scale-${i}`, role: 'authority' }, key, { algorithm: 'HS256', expiresIn: 3600 }))));
  let redis;
  const peers = {};
  const loadBefore = loadavg();
  try {
    if (PEERS.includes('socketio')) redis = await startRedis();
    for (let r = 1; r <= ROUNDS; r++) {
      for (const peer of PEERS) {
        process.stderr.write(`  round ${r}/${ROUNDS} ${peer}: `);
        (peers[peer] ??= []).push(await measurePeer(peer, n, { redisUrl: redis?.url, tokensFile, clientCount }));
      }
    }
  } finally {
    if (redis) process.kill(-redis.pid, 'SIGKILL');
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
  const minutes = (Date.now() - began) / 60000;
  const scale = {
    // The measuring options as given (--out only names where the figures are copied).
    command: `npm run bench:scale${process.argv.slice(2).join(' ').replace(/--out \S+ ?/, '').replace(/^(?=\S)/, ' -- ')}`.trimEnd(),
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`,
    limits: lim,
    connections: n,
    clients: clientCount,
    sourceAddresses: addresses,
    rounds: ROUNDS,
    idleSeconds: IDLE_SECONDS,
    rate: RATE,
    rateSeconds: RATE_SECONDS,
    loadAverage: { before: loadBefore, after: loadavg() },
    minutes,
    peers,
  };
  scale.targets = targets(peers);
  record(scale, option('out', join(__dirname, 'scale-last-run.json')));
  return scale;
}

/** A warning the block carries when the machine was busy with more than the run: which rows still hold. */
function loadWarning(scale) {
  const cores = Number(/^(\d+) ×/.exec(scale.machine)?.[1] ?? 1);
  // The 1-minute load average as the run began: the one figure that is other processes' work. During and after
  // the run, its own server and client processes keep 3-5 runnable on 2 cores (a quiet run ended at 5.3), so
  // the after figure says nothing about the machine being shared.
  const worst = scale.loadAverage.before[0];
  if (worst <= cores) return '';
  return (
    `**Measured on a busy machine** (load average ${worst.toFixed(1)} on ${cores} cores as the run began: other processes took much of the CPU). ` +
    'The memory, kernel and idle-CPU rows hold; the connect, broadcast, rate and drain rows (CPU time, latency, their ratios) measure a starved ' +
    'server and clients, and must be taken again on a quiet machine.\n\n'
  );
}

/** Prints the tables; writes the figures to `out`, and with --write the docs and the charts. */
function record(scale, out) {
  const lim = scale.limits;
  const text = table(scale);
  console.log(`\n${loadWarning(scale)}${text}\n\nmachine: ${scale.machine}; open files ${lim.nofile} (hard ${lim.nofileHard}); ${scale.minutes.toFixed(1)} min`);
  if (out) {
    writeFileSync(out, `${JSON.stringify(scale, null, 1)}\n`);
    console.error(`bench:scale: figures in ${out}`);
  }
  if (!WRITE) return;
  const resultsFile = join(ROOT, 'docs', 'bench-results.json');
  const results = JSON.parse(readFileSync(resultsFile, 'utf8'));
  results.scale = scale;
  writeFileSync(resultsFile, `${JSON.stringify(results, null, 1)}\n`);
  const doc = join(ROOT, 'docs', 'benchmarks.md');
  const load = `load average ${scale.loadAverage.before.map((x) => x.toFixed(1)).join(' / ')} before, ${scale.loadAverage.after.map((x) => x.toFixed(1)).join(' / ')} after`;
  const block =
    `<!-- scale:start -->\nCommand: \`${scale.command}\` · ${scale.date} · ${scale.machine} · open files: soft ${lim.nofileSoftBefore} raised to ${lim.nofile} (hard ${lim.nofileHard}), ` +
    `somaxconn ${lim.somaxconn}, ephemeral ports ${lim.ipLocalPortRange?.join('–')}, tcp_mem ${lim.tcpMemPages?.join(' ')} pages · ${scale.clients} client processes over ${scale.sourceAddresses} source addresses · ` +
    `${scale.rounds} round(s), ${scale.minutes.toFixed(1)} min · ${load}\n\n${loadWarning(scale)}${text}\n<!-- scale:end -->`;
  writeFileSync(doc, readFileSync(doc, 'utf8').replace(/<!-- scale:start -->[\s\S]*<!-- scale:end -->/, block));
  require('./charts').writeCharts(results);
  console.error('bench:scale: wrote docs/bench-results.json (scale), docs/benchmarks.md and the charts; `npm run capacity -- --write` updates docs/scaling.md');
}

module.exports = { percentiles, targets, table };

if (require.main === module && option('render')) {
  // --render <figures.json> [--write]: the tables (and with --write the docs) from a run's saved figures.
  const scale = JSON.parse(readFileSync(option('render'), 'utf8'));
  scale.targets = targets(scale.peers);
  record(scale);
} else if (require.main === module) {
  main().then(
    () => process.exit(0),
    (error) => {
      console.error(`bench:scale: ${error.message}`);
      killAll();
      process.exit(1);
    },
  );
}
