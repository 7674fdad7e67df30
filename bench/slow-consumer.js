// Slow-consumer isolation: 200 healthy subscribers (the counting sink) and 10 latency probes receive timed
// 16 KB alerts at 50/s. In each of `pairs` rounds the load runs once as it is and once beside 100 fresh
// subscribers that never read (8 MB each per 10 s run: more than the 4-6 MB the kernel absorbs per loopback
// socket, so the server sees backpressure). Healthy p99 with and without, per round, and the server's memory: stalled sockets
// must cost bounded memory (the gateway closes them 1013 at SLOW_CONSUMER_BYTES) and must not slow the others.
// The rounds alternate because a single p99 on this kind of machine moves with the host (steal time): a ratio
// of neighbouring runs is what the stalled sockets cost.
'use strict';
const { join } = require('node:path');
const { spawn } = require('node:child_process');
const jwt = require('jsonwebtoken');
const { startServer, startSink, SECRET } = require('./fanout');
const { subscribe } = require('./cluster-latency');

const now = () => performance.timeOrigin + performance.now();
const p99 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)];

function stallers(peer, port, count) {
  const token = jwt.sign({ sub: 'stalled', role: 'authority' }, SECRET, { expiresIn: 3600 });
  const path = peer === 'socketio' ? '/socket.io/?EIO=4&transport=websocket' : `/api/alerts/subscribe?token=${token}`;
  const proc = spawn('taskset', ['-c', '1', process.execPath, join(__dirname, 'load', 'stall.js'), `ws://127.0.0.1:${port}${path}`, String(count), peer], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const next = (type) => new Promise((resolve) => proc.on('message', function on(msg) { if (msg.type === type) { proc.off('message', on); resolve(msg); } }));
  return { proc, next, send: (m) => proc.send(m) };
}

async function measureSlowConsumer({ peer = 'gateway', redisUrl, rate = 50, seconds = 10, bytes = 16 * 1024, healthy = 200, stalled = 100, pairs = 2, probeCount = 10, warmupSeconds = 3 }) {
  // History holds the warm-up's alerts, so it is full after it: later memory growth is the sockets'.
  const server = await startServer(peer, redisUrl, 0, { ALERT_HISTORY_SIZE: String(Math.ceil(rate * warmupSeconds)) });
  const sink = await startSink(peer, server.port, healthy);
  const probes = [];
  const staller = stallers(peer, server.port, stalled);
  const ask = async (type, extra) => (server.send({ type, ...extra }), server.next(type));
  try {
    await sink.dial();
    await staller.next('ready');
    let samples = [];
    for (let i = 0; i < probeCount; i++) probes.push(await subscribe(peer, server.port, (data) => samples.push(now() - data.at)));
    // p99 of the probes' latencies, and how busy the server's core was meanwhile.
    const run = async (runSeconds = seconds) => {
      samples = [];
      const t0 = performance.now();
      const { cpu: c0 } = await ask('cpu');
      server.send({ type: 'publish-for', rate, seconds: runSeconds, bytes });
      await server.next('published');
      await new Promise((resolve) => setTimeout(resolve, 500)); // the last messages still travelling
      const { cpu: c1 } = await ask('cpu');
      return { p99: p99(samples), busy: (c1.user + c1.system - c0.user - c0.system) / 1000 / (performance.now() - t0) };
    };
    await run(warmupSeconds);
    const memBefore = await ask('memory');
    const rounds = [];
    let closed = 0;
    let peakRss = memBefore.rss;
    for (let i = 0; i < pairs; i++) {
      const alone = await run();
      staller.send({ type: 'dial' });
      const { open: dialed } = await staller.next('dialed');
      const beside = await run();
      peakRss = Math.max(peakRss, (await ask('memory')).rss);
      // Counted on the server: a stalled client never reads, so it never sees the server's close. A socket the
      // server is closing counts (its close frame waits behind the unread data until the close timeout). The
      // gateway tells the stalled sockets by their user; for the others every socket is counted.
      closed += peer === 'gateway'
        ? dialed - (await ask('accepting', { sub: 'stalled' })).count
        : healthy + probes.length + dialed - (await ask('accepting')).count;
      staller.send({ type: 'reset' });
      await staller.next('reset');
      rounds.push({ alone: alone.p99, beside: beside.p99, ratio: beside.p99 / alone.p99, busyAlone: alone.busy, busyBeside: beside.busy });
    }
    const memAfter = await ask('memory');
    return {
      rounds,
      peakRssGrowthMB: (peakRss - memBefore.rss) / 2 ** 20,
      rssGrowthMB: (memAfter.rss - memBefore.rss) / 2 ** 20,
      stalledClosedByServer: closed,
      stalledDialed: stalled * pairs,
    };
  } finally {
    for (const ws of probes) ws.terminate();
    staller.proc.kill('SIGKILL');
    await sink.close();
    server.kill();
  }
}

module.exports = { measureSlowConsumer };
