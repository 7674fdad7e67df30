// What events out cost the gateway (issue 23), part of `npm run bench`; alone: `npm run bench:webhooks [-- --quick] [-- --write]`.
//   1. Server CPU per webhook event: a sink opens and closes N sockets (connection.opened + connection.closed:
//      2N events, each queued, signed and POSTed to a local receiver answering 200), measured until the receiver
//      has them all; minus the same churn with no WEBHOOK_URL; over 2N.
//   2. Fan-out deliveries per server CPU-second with webhooks on (every event type wanted, the receiver up) and
//      off, interleaved: events must not tax the hot path (on/off at least 0.95).
// The gateway (embedded) on core 0; the sink, the receiver and this script on core 1.
'use strict';
const { randomBytes } = require('node:crypto');
const { createServer } = require('node:http');
const { cpus, totalmem } = require('node:os');
const { join } = require('node:path');
const { measureFanout, startServer, startSink, runPinned } = require('./fanout');

/** A receiver answering 200 at once; it counts requests (signatures are checked in test/e2e/webhooks.e2e.ts). */
async function startReceiver() {
  let count = 0;
  let waiter;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200).end();
      count++;
      if (waiter && count >= waiter.total) (waiter.resolve(), (waiter = undefined));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/events`,
    get count() {
      return count;
    },
    until: (total) => (count >= total ? Promise.resolve() : new Promise((resolve) => (waiter = { total, resolve }))),
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))),
  };
}

const secret = () => `whsec_${randomBytes(32).toString('base64')}`;

async function serverCpu(server) {
  server.send({ type: 'cpu' });
  const { cpu } = await server.next('cpu');
  return (cpu.user + cpu.system) / 1e6;
}

async function untilClosed(server) {
  for (;;) {
    server.send({ type: 'open' });
    if ((await server.next('open')).count === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20)); // poll: the server sees the closes soon after
  }
}

/** Server CPU-seconds for `sockets` opened and closed (after a warm-up churn), and every event delivered. */
async function churn(sockets, receiver) {
  const env = receiver ? { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret(), WEBHOOK_EVENTS: 'connection.opened,connection.closed' } : {};
  const server = await startServer('gateway', '', 0, env);
  try {
    let seconds = 0;
    for (const measured of [false, true]) {
      const sink = await startSink('gateway', server.port, sockets);
      const expected = receiver ? receiver.count + 2 * sockets : 0;
      const before = await serverCpu(server);
      await sink.dial();
      await sink.close();
      await untilClosed(server);
      if (receiver) await receiver.until(expected);
      if (measured) seconds = (await serverCpu(server)) - before;
    }
    return seconds;
  } finally {
    server.kill();
  }
}

async function measureWebhooks({ rounds = 3, quick = false, sockets = quick ? 2000 : 5000, subscribers = 1000, deliveries = quick ? 100_000 : 300_000 } = {}) {
  const receiver = await startReceiver();
  const result = { sockets, subscribers, rounds: [] };
  try {
    for (let r = 1; r <= rounds; r++) {
      process.stderr.write(`  round ${r}/${rounds} webhooks: churn of ${sockets}… `);
      // Alternating which goes first, so a drift of the host over a round favours neither.
      const first = r % 2 ? 'off' : 'on';
      const churns = {};
      const receivedBefore = receiver.count;
      for (const name of first === 'off' ? ['off', 'on'] : ['on', 'off']) churns[name] = await churn(sockets, name === 'on' ? receiver : undefined);
      const { off, on } = churns;
      const events = receiver.count - receivedBefore;
      const usPerEvent = ((on - off) / (2 * sockets)) * 1e6;
      process.stderr.write(`${usPerEvent.toFixed(1)} µs/event; fan-out × ${subscribers}… `);
      const fanout = {};
      const configs = [['off', {}], ['on', { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret(), WEBHOOK_EVENTS: 'channel.occupied,channel.vacated,presence.joined,presence.left,user.disconnected,token.revoked,alert.unacknowledged,connection.opened,connection.closed' }]];
      if (first === 'on') configs.reverse();
      for (const [name, env] of configs) {
        fanout[name] = await measureFanout('gateway', subscribers, { targetDeliveries: deliveries, env });
      }
      const round = {
        events,
        churnCpuOff: off,
        churnCpuOn: on,
        usPerEvent,
        fanoutOff: fanout.off.single.perCpuSec,
        fanoutOn: fanout.on.single.perCpuSec,
        fanoutBurstOff: fanout.off.burst8.perCpuSec,
        fanoutBurstOn: fanout.on.burst8.perCpuSec,
      };
      result.rounds.push(round);
      console.error(`on/off ${(round.fanoutOn / round.fanoutOff).toFixed(2)} single, ${(round.fanoutBurstOn / round.fanoutBurstOff).toFixed(2)} bursts of 8`);
    }
  } finally {
    await receiver.close();
  }
  return result;
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fmt = (xs, digits = 0, unit = '') => {
  const m = median(xs).toFixed(digits);
  return xs.length > 1 ? `${m}${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})` : `${m}${unit}`;
};

function webhookTable(result) {
  const col = (key) => result.rounds.map((r) => r[key]);
  const perConn = (key) => col(key).map((s) => (s / result.sockets) * 1e6);
  const ratios = (on, off) => result.rounds.map((r) => r[on] / r[off]);
  const k = (xs) => fmt(xs.map((x) => x / 1000), 0, 'k');
  return [
    `| webhooks, embedded G, a local receiver answering 200, ${result.rounds.length} interleaved round(s) | off | on | on/off |`,
    '|---|---|---|---|',
    `| server CPU per connection opened and closed (${result.sockets.toLocaleString('en')} sockets; on: 2 events each, all delivered) | ${fmt(perConn('churnCpuOff'), 0, ' µs')} | ${fmt(perConn('churnCpuOn'), 0, ' µs')} | ${fmt(ratios('churnCpuOn', 'churnCpuOff'), 2)} |`,
    `| **server CPU per webhook event** (queued, signed, POSTed, answered; on − off) | | ${fmt(col('usPerEvent'), 1, ' µs')} | |`,
    `| fan-out deliveries per server CPU-second, ${result.subscribers.toLocaleString('en')} subscribers, single broadcasts | ${k(col('fanoutOff'))} | ${k(col('fanoutOn'))} | **${fmt(ratios('fanoutOn', 'fanoutOff'), 2)}** |`,
    `| the same, bursts of 8 | ${k(col('fanoutBurstOff'))} | ${k(col('fanoutBurstOn'))} | **${fmt(ratios('fanoutBurstOn', 'fanoutBurstOff'), 2)}** |`,
  ].join('\n');
}

function writeRecord(result, command) {
  const { readFileSync, writeFileSync } = require('node:fs');
  const date = new Date().toISOString().slice(0, 10);
  const machine = `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const json = join(__dirname, '..', 'docs', 'bench-results.json');
  const recorded = JSON.parse(readFileSync(json, 'utf8'));
  recorded.webhooks = { ...result, command, date, machine };
  writeFileSync(json, `${JSON.stringify(recorded, null, 1)}\n`);
  const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
  const block = `<!-- webhooks:start -->\nCommand: \`${command}\` · ${date} · ${machine}\n\n${webhookTable(result)}\n<!-- webhooks:end -->`;
  writeFileSync(doc, readFileSync(doc, 'utf8').replace(/<!-- webhooks:start -->[\s\S]*<!-- webhooks:end -->/, block));
  console.error(`webhooks: wrote ${doc} and the webhook figures of ${json}`);
}

module.exports = { measureWebhooks, webhookTable, writeRecord };

if (require.main === module) {
  runPinned();
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? (quick ? 1 : 3));
  measureWebhooks({ rounds, quick }).then(
    (result) => {
      console.log(`\n${webhookTable(result)}`);
      if (args.includes('--write')) writeRecord(result, `npm run bench:webhooks -- ${rounds}${quick ? ' --quick' : ''} --write`);
      process.exit(0);
    },
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
