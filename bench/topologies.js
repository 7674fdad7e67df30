// Redis topologies (issue 15), part of `npm run bench` and runnable alone:
//   node bench/topologies.js [rounds=2] [--quick] [--redis-only | --connect-only] [--json] [--write]
// --write replaces the topology figures in docs/bench-results.json (what `npm run capacity` computes from).
// - Fan-out: the same load (1,000 subscribers, ~1 KB alerts, single broadcasts and bursts of 8) through one
//   gateway replica in embedded mode, on a standalone Redis and on a 6-node Redis Cluster (3 masters, 3
//   replicas); then two replicas sharing the subscribers, publishing on one: the cost once the bus is crossed.
// - Redis per message: many messages to few subscribers (so the gateways' work stays small and Redis's own
//   background work is subtracted), with one and with three replicas subscribed (the difference over two is
//   the cost per replica a message reaches): Redis CPU, commands and bytes
//   per published message on each topology, from INFO cpu / commandstats / stats summed over the nodes.
// - Skew: how channel names spread over the cluster's 3 masters.
// Gateways on core 0, load on core 1, Redis anywhere.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const net = require('node:net');
const { randomUUID } = require('node:crypto');
const { measureFanout, runPinned, startRedis, startServer, startSink } = require('./fanout');

const SUBSCRIBERS = 1000;
/** Subscribers per replica when Redis's cost per message is measured: few, so the gateways stay light. */
const PER_REPLICA = 5;
/**
 * Messages per second when Redis's cost is measured: a fixed rate every run reaches (two replicas sharing a core
 * manage about 8,000 alerts/s here), so Redis batches alike with one and with three replicas. Flat out, the rate
 * halved with the second replica and Redis's CPU per message rose with the smaller batches, which read as a
 * per-replica cost.
 */
const RATE = 4000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const cli = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args]).toString();

async function startCluster() {
  const dir = mkdtempSync(join(tmpdir(), 'rg-bench-cluster-'));
  const ports = [];
  const procs = [];
  for (let i = 0; i < 6; i++) {
    const port = await freePort();
    ports.push(port);
    procs.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `n${port}.conf`), '--cluster-node-timeout', '2000', '--repl-diskless-sync-delay', '0', '--dir', dir], { stdio: 'ignore' }));
  }
  for (const port of ports) while (true) { try { cli(port, 'PING'); break; } catch { await sleep(20); } }
  execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { stdio: 'ignore' });
  while (!ports.every((p) => cli(p, 'CLUSTER', 'INFO').includes('cluster_state:ok'))) await sleep(50);
  // Replicas in sync, so replication traffic is the steady state's, not a first full sync.
  while (!ports.every((p) => /role:master|master_link_status:up/.test(cli(p, 'INFO', 'replication')))) await sleep(50);
  return { ports, url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, stop: () => procs.forEach((p) => p.kill('SIGKILL')) };
}

/** CPU seconds, command calls and bytes so far, summed over the nodes. */
function redisCounters(ports) {
  const total = { cpu: 0, netIn: 0, netOut: 0, replOut: 0, calls: {} };
  // Client traffic only: on Redis 7.0 a replica's replication stream counts in its total_net_input_bytes.
  for (const port of ports) {
    const info = cli(port, 'INFO', 'all');
    const num = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
    total.cpu += num('used_cpu_sys') + num('used_cpu_user');
    total.netIn += num('total_net_input_bytes') - num('total_net_repl_input_bytes');
    total.netOut += num('total_net_output_bytes') - num('total_net_repl_output_bytes');
    total.replOut += num('total_net_repl_output_bytes');
    // Only what clients asked for: a replica re-executes its master's writes, which replOut already counts.
    if (!/^role:master/m.test(info)) continue;
    for (const [, cmd, calls] of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) total.calls[cmd] = (total.calls[cmd] ?? 0) + Number(calls);
  }
  return total;
}

const delta = (after, before) => ({
  cpu: after.cpu - before.cpu,
  netIn: after.netIn - before.netIn,
  netOut: after.netOut - before.netOut,
  replOut: after.replOut - before.replOut,
  calls: Object.fromEntries(Object.entries(after.calls).map(([cmd, n]) => [cmd, n - (before.calls[cmd] ?? 0)]).filter(([, n]) => n > 0)),
});

/**
 * Redis's cost per published message with `replicas` gateway replicas subscribed, `messages` published on the
 * first replica in bursts of 8 at RATE per second. `alerts`: the alerts channel (XADD; each replica tails the
 * stream with a blocking XREAD, since other services append to it directly), 5 socket subscribers per replica.
 * `chat`: a chat-like channel (XADD + PUBLISH, SPUBLISH on a cluster, in one script; replicas receive the
 * notice on pub/sub), counted by a handler on each replica's broker. The nodes' background CPU (cluster
 * gossip, cron) is measured over an idle stretch first and subtracted.
 */
async function measureRedisCost(url, ports, replicas, messages, kind) {
  const servers = [];
  const sinks = [];
  const CHANNEL = 'chat:bench-room';
  let expected = []; // per replica: frames its sink has to have seen (alerts), or publications received (chat)
  const publish = async (count, timeoutMs = 120_000, rate = undefined) => {
    if (kind === 'chat') {
      expected = expected.map((n) => n + count);
      servers[0].send({ type: 'publish-channel', channel: CHANNEL, count: count / 8, burst: 8, rate });
      for (let i = 0; i < servers.length; i++) {
        servers[i].send({ type: 'received', channel: CHANNEL, total: expected[i] });
        await servers[i].next('received');
      }
      return [];
    }
    expected = expected.map((n) => n + count * PER_REPLICA);
    sinks.forEach((sink, i) => sink.send({ type: 'expect', total: expected[i], timeoutMs }));
    servers[0].send({ type: 'broadcast', count: count / 8, burst: 8, rate });
    const got = [];
    for (const sink of sinks) got.push(await sink.next('got'));
    return got;
  };
  try {
    for (let i = 0; i < replicas; i++) servers.push(await startServer('gateway-cluster', url));
    expected = servers.map(() => 0);
    if (kind === 'chat') {
      for (const server of servers) {
        server.send({ type: 'subscribe', channel: CHANNEL });
        await server.next('subscribed');
      }
    } else {
      for (const server of servers) sinks.push(await startSink('gateway-cluster', server.port, PER_REPLICA));
      for (const sink of sinks) await sink.dial();
      // A replica's alerts subscription becomes live once its welcome went out, which may follow the 101: until
      // every sink has seen a whole burst, frames published before are not owed (the welcome's position is past
      // them), so each sink's count restarts from what it has.
      while ((await publish(8, 1000)).some((g) => g.timedOut)) {
        await sleep(100); // the late frames of that burst, if any, arrive before the counts are taken
        for (const sink of sinks) sink.send({ type: 'expect', total: 0 }); // answered at once with the count
        for (let i = 0; i < sinks.length; i++) expected[i] = (await sinks[i].next('got')).frames;
      }
    }
    const check = (got) => {
      const short = got.find((g) => g.timedOut);
      if (short) throw new Error(`redis cost: a sink saw ${short.frames} frames, ${expected.join(' / ')} expected`);
    };
    check(await publish(800)); // warm-up
    const idle0 = redisCounters(ports);
    const t0 = process.hrtime.bigint();
    await sleep(2000);
    const idle = delta(redisCounters(ports), idle0);
    const idleSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const idleCpuPerSec = idle.cpu / idleSeconds;
    // Every replica polls Redis on its own (receipts' due tasks every 500 ms, presence sweeps): calls made while
    // nothing is published, subtracted per second like the CPU, so "per message" is what a message costs (a run
    // that took longer under load showed evalsha 1.006 per message from those polls alone).
    const idleCallsPerSec = Object.fromEntries(Object.entries(idle.calls).map(([cmd, n]) => [cmd, n / idleSeconds]));
    const cpus = async () => {
      const out = [];
      for (const server of servers) {
        server.send({ type: 'cpu' });
        const { cpu } = await server.next('cpu');
        out.push(cpu.user + cpu.system);
      }
      return out;
    };
    const gatewayBefore = await cpus();
    const before = redisCounters(ports);
    const t1 = process.hrtime.bigint();
    check(await publish(messages, 120_000, RATE));
    const seconds = Number(process.hrtime.bigint() - t1) / 1e9;
    const used = delta(redisCounters(ports), before);
    const gatewayUsed = (await cpus()).map((us, i) => us - gatewayBefore[i]);
    return {
      kind,
      replicas,
      messages,
      messagesPerSec: messages / seconds,
      cpuUsPerMessage: (Math.max(0, used.cpu - idleCpuPerSec * seconds) * 1e6) / messages,
      bytesInPerMessage: used.netIn / messages,
      bytesOutPerMessage: used.netOut / messages,
      replBytesPerMessage: used.replOut / messages,
      callsPerMessage: Object.fromEntries(
        Object.entries(used.calls).map(([cmd, n]) => [cmd, Math.max(0, n - (idleCallsPerSec[cmd] ?? 0) * seconds) / messages]),
      ),
      idleCallsPerSec,
      // Per replica, the publishing one first: its CPU per message (chat: publish and receive; the others
      // only receive).
      gatewayCpuUsPerMessage: gatewayUsed.map((us) => us / messages),
    };
  } finally {
    for (const sink of sinks) await sink.close();
    for (const server of servers) server.kill();
  }
}

/**
 * Redis's cost per connection when a per-user limit is on (MAX_CONNECTIONS_PER_USER: every upgrade takes a
 * seat in Redis and every close gives it back, on the `{rt}` slot): `count` sockets opened and then reset.
 */
async function measureConnectCost(url, ports, count) {
  const server = await startServer('gateway-cluster', url, 0, { MAX_CONNECTIONS_PER_USER: String(count * 2) });
  try {
    const warm = await startSink('gateway-cluster', server.port, 200);
    await warm.dial();
    await warm.close();
    await untilClosed(server);
    const idle0 = redisCounters(ports);
    const tIdle = process.hrtime.bigint();
    await sleep(2000);
    const idleCpuPerSec = delta(redisCounters(ports), idle0).cpu / (Number(process.hrtime.bigint() - tIdle) / 1e9);
    const before = redisCounters(ports);
    const t0 = process.hrtime.bigint();
    const sink = await startSink('gateway-cluster', server.port, count);
    await sink.dial();
    await sink.close();
    await untilClosed(server);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const used = delta(redisCounters(ports), before);
    return {
      connections: count,
      cpuUsPerConnection: (Math.max(0, used.cpu - idleCpuPerSec * seconds) * 1e6) / count,
      seconds,
      callsPerConnection: Object.fromEntries(Object.entries(used.calls).map(([cmd, n]) => [cmd, n / count])),
    };
  } finally {
    server.kill();
  }
}

async function untilClosed(server) {
  for (;;) {
    server.send({ type: 'open' });
    if ((await server.next('open')).count === 0) return;
    await sleep(20); // poll: the server sees the resets soon after
  }
}

/** Masters: id, port and the slot ranges they own. */
function masters(port) {
  return cli(port, 'CLUSTER', 'NODES').split('\n').map((l) => l.split(' ')).filter((f) => f[2]?.includes('master')).map((f) => ({
    id: f[0].slice(0, 8),
    ranges: f.slice(8).map((r) => r.split('-').map(Number)),
  }));
}

function skew(port, names) {
  const owners = masters(port);
  const counts = new Map(owners.map((o) => [o.id, 0]));
  for (const name of names) {
    const slot = Number(cli(port, 'CLUSTER', 'KEYSLOT', name));
    const owner = owners.find((o) => o.ranges.some(([a, b = a]) => slot >= a && slot <= b));
    counts.set(owner.id, counts.get(owner.id) + 1);
  }
  const values = [...counts.values()];
  const mean = names.length / values.length;
  return { perMaster: values, maxOverMean: Math.max(...values) / mean };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/** Every measure of this file, `rounds` interleaved rounds; the JSON `bench/capacity.js` reads. */
async function measureTopologies({ rounds = 2, quick = false, parts = ['fanout', 'redis', 'connect'], log = (line) => process.stderr.write(line) } = {}) {
  const standalone = await startRedis();
  const cluster = await startCluster();
  const standalonePort = Number(/:(\d+)\//.exec(standalone.url)[1]);
  const fanout = [];
  const redis = [];
  const messages = quick ? 8000 : 20_000;
  try {
    for (let r = 1; r <= rounds; r++) {
      for (const [topology, peer, url, replicas] of !parts.includes('fanout') ? [] : [
        ['embedded', 'gateway', '', 1],
        ['standalone', 'gateway-cluster', standalone.url, 1],
        ['cluster', 'gateway-cluster', cluster.url, 1],
        ['standalone', 'gateway-cluster', standalone.url, 2],
        ['cluster', 'gateway-cluster', cluster.url, 2],
      ]) {
        log(`  round ${r}/${rounds} fan-out ${topology}, ${replicas} replica(s)… `);
        const res = await measureFanout(peer, SUBSCRIBERS, { redisUrl: url, targetDeliveries: quick ? 100_000 : 200_000, replicas });
        fanout.push({ round: r, topology, replicas, single: res.single.perCpuSec, burst8: res.burst8.perCpuSec });
        log(`${Math.round(res.single.perCpuSec / 1000)}k single, ${Math.round(res.burst8.perCpuSec / 1000)}k burst8 per gateway CPU-s\n`);
      }
      for (const [topology, url, ports] of !parts.includes('redis') ? [] : [['standalone', standalone.url, [standalonePort]], ['cluster', cluster.url, cluster.ports]]) {
        for (const [kind, replicas] of [['alerts', 1], ['alerts', 3], ['chat', 1], ['chat', 3]]) {
          log(`  round ${r}/${rounds} Redis per message, ${kind}, ${topology}, ${replicas} replica(s)… `);
          const res = await measureRedisCost(url, ports, replicas, messages, kind);
          redis.push({ round: r, topology, ...res });
          log(`${res.cpuUsPerMessage.toFixed(1)} µs CPU, ${Math.round(res.bytesInPerMessage)} B in, ${Math.round(res.bytesOutPerMessage)} B out per message (${Math.round(res.messagesPerSec)}/s)\n`);
        }
      }
    }
    const connect = [];
    if (parts.includes('connect')) {
      for (const [topology, url, ports] of [['standalone', standalone.url, [standalonePort]], ['cluster', cluster.url, cluster.ports]]) {
        log(`  connect cost with a per-user limit, ${topology}… `);
        const res = await measureConnectCost(url, ports, quick ? 2000 : 5000);
        connect.push({ topology, ...res });
        log(`${res.cpuUsPerConnection.toFixed(1)} µs Redis CPU per connection (open and close)\n`);
      }
    }
    const names = {
      'chat rooms room-1 … room-3000': Array.from({ length: 3000 }, (_, i) => `rt:{chat:room-${i + 1}}`),
      'chat rooms by UUID (3000)': Array.from({ length: 3000 }, () => `rt:{chat:${randomUUID()}}`),
      'users user:<numeric id> (3000)': Array.from({ length: 3000 }, (_, i) => `rt:{user:${100000 + i}}`),
      'consultations signaling:c-<n> (3000)': Array.from({ length: 3000 }, (_, i) => `rt:{signaling:c-${i}}`),
    };
    const skews = Object.entries(names).map(([label, list]) => ({ label, ...skew(cluster.ports[0], list) }));
    return { subscribers: SUBSCRIBERS, fanout, redis, connect, skew: skews };
  } finally {
    standalone.proc.kill('SIGKILL');
    cluster.stop();
  }
}

/** The markdown tables of a measureTopologies result. */
function topologyTables(result) {
  const rows = (topology, replicas) => result.fanout.filter((x) => x.topology === topology && x.replicas === replicas);
  const k = (xs) => `${Math.round(median(xs) / 1000)}k (${xs.map((x) => Math.round(x / 1000)).join(', ')})`;
  const embedded = rows('embedded', 1);
  const fan = [
    `| ${result.subscribers.toLocaleString('en')} subscribers, ~1 KB alerts | single broadcasts per gateway CPU-s | vs embedded | bursts of 8 | vs embedded |`,
    '|---|---|---|---|---|',
  ];
  for (const [topology, replicas] of [['embedded', 1], ['standalone', 1], ['cluster', 1], ['standalone', 2], ['cluster', 2]]) {
    const r = rows(topology, replicas);
    if (r.length === 0) continue;
    const vs = (key) => (median(r.map((x) => x[key])) / median(embedded.map((x) => x[key]))).toFixed(2);
    const label = topology === 'embedded' ? 'embedded, one replica' : `${topology === 'cluster' ? 'Redis Cluster' : 'standalone Redis'}, ${replicas === 1 ? 'one replica' : 'two replicas (published on one)'}`;
    fan.push(`| ${label} | ${k(r.map((x) => x.single))} | ${vs('single')} | ${k(r.map((x) => x.burst8))} | ${vs('burst8')} |`);
  }
  const cost = [
    `| Redis per published ~1 KB message, bursts of 8 at ${RATE.toLocaleString('en')}/s | rate reached | Redis CPU (all nodes) | client bytes in | client bytes out | replication bytes | commands on masters |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const [kind, topology, replicas] of [['alerts', 'standalone', 1], ['alerts', 'standalone', 3], ['alerts', 'cluster', 1], ['alerts', 'cluster', 3], ['chat', 'standalone', 1], ['chat', 'standalone', 3], ['chat', 'cluster', 1], ['chat', 'cluster', 3]]) {
    {
      const r = result.redis.filter((x) => x.kind === kind && x.topology === topology && x.replicas === replicas);
      if (r.length === 0) continue;
      const m = (key, digits = 0) => median(r.map((x) => x[key])).toFixed(digits);
      const calls = {};
      for (const x of r) for (const [cmd, n] of Object.entries(x.callsPerMessage)) (calls[cmd] ??= []).push(n);
      const top = Object.entries(calls).map(([cmd, ns]) => [cmd, median(ns)]).filter(([, n]) => n >= 0.05).sort((a, b) => b[1] - a[1]);
      cost.push(`| ${kind === 'alerts' ? 'alerts (stream tailed)' : 'chat room (pub/sub notice)'}, ${topology === 'cluster' ? 'Redis Cluster' : 'standalone'}, ${replicas === 1 ? 'one replica' : `${replicas} replicas`} | ${m('messagesPerSec')}/s | ${m('cpuUsPerMessage', 1)} µs (${r.map((x) => x.cpuUsPerMessage.toFixed(1)).join(', ')}) | ${m('bytesInPerMessage')} | ${m('bytesOutPerMessage')} | ${m('replBytesPerMessage')} | ${top.map(([cmd, n]) => `${cmd} ${n.toFixed(2)}`).join(', ')} |`);
    }
  }
  const conn = [
    '| Redis per connection with MAX_CONNECTIONS_PER_USER on (open, then close) | Redis CPU (all nodes) | commands on masters |',
    '|---|---|---|',
    ...result.connect.map((c) => `| ${c.topology === 'cluster' ? 'Redis Cluster' : 'standalone'}, ${c.connections.toLocaleString('en')} sockets | ${c.cpuUsPerConnection.toFixed(1)} µs | ${Object.entries(c.callsPerConnection).filter(([, n]) => n >= 0.05).sort((a, b) => b[1] - a[1]).map(([cmd, n]) => `${cmd} ${n.toFixed(2)}`).join(', ')} |`),
  ];
  const sk = ['| channel names over 3 masters | per master | max / mean |', '|---|---|---|', ...result.skew.map((s) => `| ${s.label} | ${s.perMaster.join(' / ')} | ${s.maxOverMean.toFixed(2)} |`), '| presence (every key under `{rt}`) | one slot, one master | — |'];
  return `${fan.length > 2 ? `${fan.join('\n')}\n\n` : ''}${result.redis.length ? `${cost.join('\n')}\n\n` : ''}${result.connect.length ? `${conn.join('\n')}\n\n` : ''}${sk.join('\n')}`;
}

/**
 * Records a run: its tables in docs/benchmarks.md (between the topologies markers) and its figures in
 * docs/bench-results.json (what `npm run capacity` computes from), saying which command produced them.
 */
function writeRecord(result, command) {
  const { readFileSync, writeFileSync } = require('node:fs');
  const { cpus, totalmem } = require('node:os');
  const date = new Date().toISOString().slice(0, 10);
  const machine = `${cpus().length} × ${cpus()[0].model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const json = join(__dirname, '..', 'docs', 'bench-results.json');
  const recorded = JSON.parse(readFileSync(json, 'utf8'));
  recorded.topologies = { ...result, command, date };
  writeFileSync(json, `${JSON.stringify(recorded, null, 1)}\n`);
  const doc = join(__dirname, '..', 'docs', 'benchmarks.md');
  const block = `<!-- topologies:start -->\nCommand: \`${command}\` · ${date} · ${machine}; the cluster has 3 masters and 3 replicas\n\n${topologyTables(result)}\n<!-- topologies:end -->`;
  writeFileSync(doc, readFileSync(doc, 'utf8').replace(/<!-- topologies:start -->[\s\S]*<!-- topologies:end -->/, block));
  console.error(`topologies: wrote ${doc} and the topology figures of ${json}`);
}

module.exports = { writeRecord, measureTopologies, topologyTables, measureRedisCost, measureConnectCost };

if (require.main === module) {
  runPinned();
  const args = process.argv.slice(2);
  const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? 2);
  measureTopologies({ rounds, quick: args.includes('--quick'), parts: args.includes('--connect-only') ? ['connect'] : args.includes('--redis-only') ? ['redis', 'connect'] : undefined }).then(
    (result) => {
      console.log(`\n${topologyTables(result)}`);
      if (args.includes('--json')) console.log(JSON.stringify(result));
      if (args.includes('--write')) writeRecord(result, `npm run bench:topologies -- ${rounds}${args.includes('--quick') ? ' --quick' : ''} --write`);
      process.exit(0);
    },
    (error) => { console.error(error); process.exit(1); },
  );
}
