#!/usr/bin/env node
// npm run bench:cluster [-- --peer gateway|socketio|both --rounds 1 --rate 1000 --seconds 10 --subscribers 10 --transport path|ws-channel|sse --hops]
// Cross-replica publish -> deliver latency: two replicas of a peer (G: this gateway in cluster mode; S:
// Socket.IO with the Redis adapter and a JWT-checked POST /api/alerts) on one throwaway redis-server, both
// pinned to core 0; subscribers on replica B; alerts POSTed to replica A at a fixed open-loop rate. Latency
// runs from each alert's scheduled send time (no coordinated omission) to its arrival at each subscriber.
// --hops: the servers stamp each alert on its way (bench/peers/server.js BENCH_HOPS) and the result splits the
// latency into hops: the POST reaching replica A, A publishing to Redis, Redis reaching replica B, B to the socket.
// --no-watch: no event-loop and GC watch in the replicas (as npm run bench measures).
// --peer both --rounds N: G and S alternating (the one that goes first alternates too), then a markdown table of
// medians with each round's value.
'use strict';
const { once } = require('node:events');
const http = require('node:http');
const jwt = require('jsonwebtoken');
const WebSocket = require('ws');
const { startServer, runPinned, startRedis, SECRET } = require('./fanout');

// Warm-up: the rate ramps from 10% to 100% over RAMP_SECONDS, then holds for HOLD_SECONDS before measuring. A
// cold start at full rate built a backlog (cold JIT, fresh keep-alive sockets) that took 2-5 s to drain, and
// the p99 then measured that drain rather than the steady state.
const RAMP_SECONDS = 2;
const HOLD_SECONDS = 2;
const WARMUP_SECONDS = RAMP_SECONDS + HOLD_SECONDS;

/** Scheduled send times (ms after start): the ramp, then evenly spaced at `rate`; the index where measuring starts. */
function schedule(rate, seconds) {
  const times = [];
  let t = 0;
  while (t < RAMP_SECONDS * 1000) {
    times.push(t);
    t += 1000 / (rate * (0.1 + (0.9 * t) / (RAMP_SECONDS * 1000)));
  }
  const holdFrom = t;
  for (let i = 0; i < rate * (HOLD_SECONDS + seconds); i++) times.push(holdFrom + (i * 1000) / rate);
  return { times, measureFrom: times.length - rate * seconds };
}
const now = () => performance.timeOrigin + performance.now();

/**
 * A subscriber on `port`; calls onAlert(data) per alert; resolves with something to `terminate()` once it
 * receives. Speaks engine.io/Socket.IO for S. For G, `transport`: `path` (the alerts endpoint, the default),
 * `ws-channel` (`/ws` subscribed to `alerts`) or `sse` (`GET /sse?channel=alerts`, read with node:http).
 */
async function subscribe(peer, port, onAlert, transport = 'path', index = 0) {
  // Each subscriber its own user (issue 26: production's shape, not one user N times).
  const token = jwt.sign({ sub: `bench-sub-${index}`, role: 'authority' }, SECRET, { expiresIn: 3600 });
  if (peer !== 'socketio' && transport === 'sse') {
    // A replica whose Redis link is not up yet answers 503 unavailable (Retry-After); a client tries again.
    for (let attempt = 0; ; attempt++) {
      try {
        return await subscribeSse(port, token, onAlert);
      } catch (error) {
        if (!/: 503$/.test(error.message) || attempt >= 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }
  if (peer !== 'socketio' && transport === 'ws-channel') {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['bearer', token]);
    const subscribed = new Promise((resolve, reject) => {
      ws.on('message', (raw) => {
        const frame = JSON.parse(raw);
        if (frame.type === 'publication' && frame.channel === 'alerts') onAlert(frame.data);
        else if (frame.type === 'subscribed') resolve();
        else if (frame.type === 'error') reject(new Error(`/ws subscribe: ${frame.payload?.code}`));
      });
      ws.once('error', reject);
    });
    await once(ws, 'open');
    ws.send(JSON.stringify({ type: 'subscribe', channel: 'alerts' }));
    await subscribed;
    return ws;
  }
  if (peer === 'socketio') {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    const joined = new Promise((resolve) => {
      ws.on('message', (raw) => {
        const text = raw.toString();
        if (text.startsWith('0')) ws.send('40');
        else if (text.startsWith('40')) resolve();
        else if (text === '2') ws.send('3');
        else if (text.startsWith('42')) {
          const [event, alert] = JSON.parse(text.slice(2));
          if (event === 'alert') onAlert(alert.data);
        }
      });
    });
    await joined;
    return ws;
  }
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/alerts/subscribe`, ['bearer', token]);
  ws.on('message', (raw) => {
    const frame = JSON.parse(raw);
    if (frame.type === 'alert') onAlert(frame.data);
  });
  await once(ws, 'open');
  return ws;
}

/** An SSE reader (node:http, lines split as the SSE format says); resolves after the welcome event. */
function subscribeSse(port, token, onAlert) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/sse?channel=alerts', headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET /sse: ${res.statusCode}`));
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk) => {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (!line.startsWith('data:')) continue; // id:, comments, the blank line ending each event
          const frame = JSON.parse(line.slice(5));
          if (frame.type === 'publication' && frame.channel === 'alerts') onAlert(frame.data);
          else if (frame.type === 'welcome') resolve({ terminate: () => req.destroy() });
        }
      });
    });
    req.on('error', reject);
  });
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Per-hop latency from the servers' stamps (each keyed by the alert's `at`): for each hop, the p50/p99 of the time
 * from the previous stamp to this one, over the measured alerts (per subscriber for the last hop).
 */
function hopBreakdown(fromA, fromB, arrivals, measureFrom) {
  const byAt = (records) => {
    const map = new Map();
    for (const [t, at] of records) if (at >= measureFrom && !map.has(at)) map.set(at, t);
    return map;
  };
  const request = byAt(fromA.request);
  const published = byAt(fromA.published);
  const woke = byAt(fromB.woke);
  const bus = byAt(fromB.bus);
  const stat = (values) => {
    const sorted = values.filter((v) => Number.isFinite(v)).sort((x, y) => x - y);
    return sorted.length ? { min: sorted[0], p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length } : undefined;
  };
  const diff = (to, from) => [...to].map(([at, t]) => (from === undefined ? t - at : from.has(at) ? t - from.get(at) : NaN));
  const hops = {
    post: stat(diff(request)),
    publish: stat(diff(published, request)),
    toB: stat(diff(bus, published)),
    socket: stat(arrivals.map(([at, t]) => (bus.has(at) ? t - bus.get(at) : NaN))),
  };
  // G's way to B in two: Redis answers B's read of the stream, then B hands the entries to the channel.
  if (woke.size) Object.assign(hops, { woke: stat(diff(woke, published)), channel: stat(diff(bus, woke)) });
  return hops;
}

/** What each hop of hopBreakdown() covers. */
const HOPS = {
  post: 'scheduled send → replica A\'s request event (the publisher, HTTP, A\'s event loop)',
  publish: 'A: request → publication written to Redis (body, token, validation)',
  toB: 'written to Redis → replica B hands it to its channel (Redis, B\'s read)',
  woke: '  of which: → B\'s read of the stream returns (G)',
  channel: '  of which: read → channel (G)',
  socket: 'B\'s channel → the subscriber\'s socket (fan-out, kernel, client)',
};

/**
 * `hops`: stamp each alert at every hop (hopBreakdown). `watch`: report each replica's event-loop delay and GC
 * pauses (a 10 ms timer in each replica; npm run bench leaves it off).
 */
async function measureLatency({ peer = 'gateway', rate = 1000, seconds = 10, subscribers = 10, redisUrl, transport = 'path', hops = false, watch = false }) {
  const kind = peer === 'gateway' ? 'gateway-cluster' : peer;
  const env = hops ? { BENCH_HOPS: '1' } : {};
  const [a, b] = [await startServer(kind, redisUrl, 0, env), await startServer(kind, redisUrl, 0, env)];
  const sockets = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  try {
    const samples = [];
    const arrivals = []; // [at, arrival time] per delivery, with --hops
    let measureFrom = Infinity;
    for (let i = 0; i < subscribers; i++) {
      sockets.push(
        await subscribe(peer, b.port, (data) => {
          const arrived = now();
          if (data.at >= measureFrom) {
            samples.push(arrived - data.at);
            if (hops) arrivals.push([data.at, arrived]);
          }
        }, transport, i),
      );
    }
    const pubToken = jwt.sign({ sub: 'bench-pub', role: 'service' }, SECRET, { expiresIn: 3600 });
    let failed = 0;
    const post = (at) =>
      new Promise((resolve) => {
        const body = JSON.stringify({ data: { at } });
        const req = http.request(
          { host: '127.0.0.1', port: a.internalPort, path: '/api/alerts', method: 'POST', agent, headers: { authorization: `Bearer ${pubToken}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(hops ? { 'x-bench-at': String(at) } : {}) } },
          (res) => {
            if (res.statusCode !== 202) failed++;
            res.resume();
            res.on('end', resolve);
          },
        );
        req.on('error', () => (failed++, resolve()));
        req.end(body);
      });

    // Open loop: every tick, send whatever the schedule says is due, stamped with its scheduled time.
    const { times, measureFrom: firstMeasured } = schedule(rate, seconds);
    const total = times.length;
    const cpuOf = async (server) => {
      server.send({ type: 'cpu' });
      const { cpu } = await server.next('cpu');
      return (cpu.user + cpu.system) / 1000;
    };
    const stallsOf = async (server) => {
      server.send({ type: 'stalls' });
      const { loop, gc } = await server.next('stalls');
      return { loop, gc };
    };
    const cpuBefore = [await cpuOf(a), await cpuOf(b)];
    if (watch) {
      await stallsOf(a);
      await stallsOf(b);
    }
    const start = now() + 10;
    let sent = 0;
    const inflight = new Set();
    await new Promise((resolve) => {
      const tick = () => {
        const elapsed = now() - start;
        while (sent < total && times[sent] <= elapsed) {
          const at = start + times[sent];
          if (sent === firstMeasured) measureFrom = at;
          sent++;
          const p = post(at);
          inflight.add(p);
          p.then(() => inflight.delete(p));
        }
        if (sent < total) setTimeout(tick, 1);
        else resolve();
      };
      tick();
    });
    await Promise.all(inflight);
    const sentFor = (now() - start) / 1000;
    const cpuAfter = [await cpuOf(a), await cpuOf(b)];
    const stalls = watch ? { a: await stallsOf(a), b: await stallsOf(b) } : undefined;
    // Share of a core each replica used over the run (both are pinned to core 0: their sum is its load).
    const cpu = { a: (cpuAfter[0] - cpuBefore[0]) / 1000 / sentFor, b: (cpuAfter[1] - cpuBefore[1]) / 1000 / sentFor };
    const expected = rate * seconds * subscribers;
    const deadline = Date.now() + 10_000;
    while (samples.length < expected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const sorted = samples.sort((x, y) => x - y);
    let breakdown;
    if (hops) {
      a.send({ type: 'hops' });
      const fromA = await a.next('hops');
      b.send({ type: 'hops' });
      breakdown = hopBreakdown(fromA, await b.next('hops'), arrivals, measureFrom);
    }
    return {
      ...(breakdown ? { hops: breakdown } : {}),
      cpu,
      ...(stalls ? { stalls } : {}),
      deliveries: samples.length,
      expected,
      failedPosts: failed,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      p999: percentile(sorted, 99.9),
      max: sorted[sorted.length - 1],
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    agent.destroy();
    a.kill();
    b.kill();
  }
}

/** Medians over rounds (each round's value listed) of the latency, the CPU and, with --hops, each hop: a markdown table. */
function summaryTable(results, options) {
  const peers = Object.keys(results);
  const med = (xs) => {
    const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
    return s.length ? s[(s.length - 1) >> 1] : undefined;
  };
  const cell = (xs, digits = 2, unit = ' ms') => {
    const m = med(xs);
    return m === undefined ? 'n/a' : `${m.toFixed(digits)}${unit} (${xs.map((x) => (x === undefined ? 'n/a' : x.toFixed(digits))).join(', ')})`;
  };
  const head = `| ${options.rate}/s, ${options.subscribers} subscribers on replica B, medians (rounds) | ${peers.map((p) => (p === 'socketio' ? 'Socket.IO (S)' : 'gateway (G)')).join(' | ')} |${peers.length > 1 ? ' G ÷ S |' : ''}`;
  const lines = [head, `|---|${peers.map(() => '---|').join('')}${peers.length > 1 ? '---|' : ''}`];
  const row = (label, pick, digits, unit) => {
    const values = peers.map((p) => results[p].map(pick));
    const ratio = peers.length > 1 && med(values[1]) ? ` ${(med(values[0]) / med(values[1])).toFixed(2)} |` : peers.length > 1 ? ' |' : '';
    lines.push(`| ${label} | ${values.map((v) => cell(v, digits, unit)).join(' | ')} |${ratio}`);
  };
  row('publish → delivery p50', (r) => r.p50);
  row('publish → delivery p99', (r) => r.p99);
  row('replica A CPU, % of a core', (r) => r.cpu.a * 100, 1, ' %');
  row('replica B CPU, % of a core', (r) => r.cpu.b * 100, 1, ' %');
  if (options.watch) {
    row('A\'s event-loop delay p99', (r) => r.stalls.a.loop.p99, 1);
    row('B\'s event-loop delay p99', (r) => r.stalls.b.loop.p99, 1);
  }
  if (options.hops) {
    for (const hop of Object.keys(HOPS)) {
      if (!peers.some((p) => results[p].some((r) => r.hops?.[hop]))) continue;
      row(`${HOPS[hop]}: p50`, (r) => r.hops?.[hop]?.p50, 3);
      row(`${HOPS[hop]}: p99`, (r) => r.hops?.[hop]?.p99, 3);
    }
  }
  return lines.join('\n');
}

module.exports = { measureLatency, subscribe };

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = argv.indexOf(`--${name}`);
    return i === -1 ? fallback : argv[i + 1];
  };
  runPinned(1);
  (async () => {
    const redis = await startRedis();
    process.on('exit', () => redis.proc.kill('SIGKILL'));
    const peer = opt('peer', 'gateway');
    const options = { rate: Number(opt('rate', 1000)), seconds: Number(opt('seconds', 10)), subscribers: Number(opt('subscribers', 10)), transport: opt('transport', 'path'), hops: argv.includes('--hops'), watch: !argv.includes('--no-watch') };
    const peers = peer === 'both' ? ['gateway', 'socketio'] : [peer];
    const rounds = Number(opt('rounds', 1));
    process.stderr.write(`cluster latency: ${peers.join(' and ')}${peer === 'socketio' ? '' : ` (${options.transport})`}, ${options.rate} alerts/s for ${options.seconds} s (+${WARMUP_SECONDS} s warm-up), ${options.subscribers} subscribers on replica B, ${rounds} round(s)\n`);
    const ms = (v) => (v === undefined ? 'n/a (nothing delivered)' : `${v.toFixed(2)} ms`);
    const stallLine = ({ loop, gc }) =>
      `event-loop delay p99 ${loop.p99.toFixed(1)} ms, max ${loop.max.toFixed(1)} ms; GC ` +
      (Object.entries(gc).map(([kind, g]) => `${kind} ${g.count}× total ${g.totalMs.toFixed(0)} ms max ${g.maxMs.toFixed(1)} ms`).join(', ') || 'none');
    const results = Object.fromEntries(peers.map((p) => [p, []]));
    for (let r = 0; r < rounds; r++) {
      // The peer that goes first alternates between rounds.
      for (const p of r % 2 ? [...peers].reverse() : peers) {
        const result = await measureLatency({ ...options, peer: p, redisUrl: redis.url });
        results[p].push(result);
        if (rounds > 1 || peers.length > 1) {
          process.stderr.write(`  round ${r + 1} ${p}: p50 ${ms(result.p50)}, p99 ${ms(result.p99)}, CPU A ${(result.cpu.a * 100).toFixed(1)} % B ${(result.cpu.b * 100).toFixed(1)} %\n`);
          continue;
        }
        const hops = result.hops && Object.fromEntries(Object.entries(result.hops).map(([hop, s]) => [HOPS[hop].trim(), s ? `p50 ${s.p50.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms (${s.n})` : 'n/a']));
        console.log(JSON.stringify({ peer: p, ...options, ...result, ...(result.stalls ? { stalls: { a: stallLine(result.stalls.a), b: stallLine(result.stalls.b) } } : {}), p50: ms(result.p50), p99: ms(result.p99), p999: ms(result.p999), max: ms(result.max), cpu: `replica A ${(result.cpu.a * 100).toFixed(1)} %, replica B ${(result.cpu.b * 100).toFixed(1)} % of core 0`, ...(hops ? { hops } : {}) }, null, 2));
      }
    }
    if (rounds > 1 || peers.length > 1) console.log(summaryTable(results, options));
    process.exit(0);
  })().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
