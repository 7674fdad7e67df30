// A server under test, run in its own process (pinned by the runner) with --expose-gc, driven over IPC:
//   gateway: the real service (dist/), embedded mode;  ws: a bare `ws` server, no auth (the reference).
'use strict';
const kind = process.argv[2];

async function start() {
  if (kind === 'gateway') {
    const { startGateway } = require('../../dist/app');
    const { loadConfig } = require('../../dist/config/config');
    const { createLogger } = require('../../dist/logging/logger');
    const { config } = loadConfig({ ...process.env, PORT: '0', HOST: '127.0.0.1' });
    const pino = require('pino');
    // Logs are part of the product cost: keep them on, written to /dev/null.
    const log = createLogger(config.logLevel, config.nodeId, pino.destination({ dest: '/dev/null', sync: false, minLength: 4096 }));
    const gw = await startGateway(config, log);
    return gw.port;
  }
  if (kind === 'ws') {
    const { WebSocketServer } = require('ws');
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    await new Promise((resolve) => wss.on('listening', resolve));
    return wss.address().port;
  }
  throw new Error(`unknown peer ${kind}`);
}

function memory() {
  global.gc();
  global.gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, cpu: process.cpuUsage() };
}

process.on('SIGINT', () => process.exit(0)); // lets --cpu-prof write its profile

start().then((port) => {
  process.send({ type: 'ready', port });
  process.on('message', (msg) => {
    if (msg.type === 'memory') process.send({ type: 'memory', ...memory() });
    if (msg.type === 'cpu') process.send({ type: 'cpu', cpu: process.cpuUsage() });
  });
});
