// Slow-consumer isolation: 200 healthy subscribers (the counting sink) and 10 latency probes receive timed
// 16 KB alerts at 50/s; then 100 subscribers that never read join, and the same load runs again, long enough
// (6.4 MB per stalled socket) to overflow the kernel's socket buffers. Healthy p99 before and after, and the server's memory: stalled sockets must cost bounded memory
// (the gateway closes them 1013 at SLOW_CONSUMER_BYTES) and must not slow everyone else down.
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

async function measureSlowConsumer({ peer = 'gateway', redisUrl, rate = 50, seconds = 8, bytes = 16 * 1024, healthy = 200, stalled = 100 }) {
  const server = await startServer(peer, redisUrl);
  const sink = await startSink(peer, server.port, healthy);
  const probes = [];
  const staller = stallers(peer, server.port, stalled);
  try {
    await sink.dial();
    let samples = [];
    for (let i = 0; i < 10; i++) probes.push(await subscribe(peer, server.port, (data) => samples.push(now() - data.at)));
    const run = async () => {
      samples = [];
      server.send({ type: 'publish-for', rate, seconds, bytes });
      await server.next('published');
      await new Promise((resolve) => setTimeout(resolve, 500)); // the last messages still travelling
      return p99(samples);
    };
    await run(); // warm-up
    const before = await run();
    server.send({ type: 'memory' });
    const memBefore = await server.next('memory');
    await staller.next('ready');
    staller.send({ type: 'dial' });
    await staller.next('dialed');
    const after = await run();
    const afterSecond = await run();
    server.send({ type: 'memory' });
    const memAfter = await server.next('memory');
    staller.send({ type: 'status' });
    const status = await staller.next('status');
    return {
      p99Before: before,
      p99After: Math.max(after, afterSecond),
      rssGrowthMB: (memAfter.rss - memBefore.rss) / 2 ** 20,
      stalledClosedByServer: status.closedByServer,
    };
  } finally {
    for (const ws of probes) ws.terminate();
    staller.proc.kill('SIGKILL');
    await sink.close();
    server.kill();
  }
}

module.exports = { measureSlowConsumer };
