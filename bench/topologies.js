// Redis topologies: the same fan-out (one gateway replica in cluster mode, 1,000 subscribers, ~1 KB alerts,
// single broadcasts and bursts of 8) through a standalone Redis and through a 6-node Redis Cluster (3 masters,
// 3 replicas), against embedded mode; the Redis CPU per published message on each (INFO cpu summed over the
// nodes); and how channel names spread over the cluster's 3 masters (skew). Gateway on core 0, load on core 1,
// Redis anywhere.   node bench/topologies.js [rounds=2]
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const net = require('node:net');
const { measureFanout, runPinned, startRedis } = require('./fanout');

const ROUNDS = Number(process.argv[2] || 2);
const SUBSCRIBERS = 1000;
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
  return { ports, url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, stop: () => procs.forEach((p) => p.kill('SIGKILL')) };
}

function redisCpu(ports) {
  let total = 0;
  for (const port of ports) {
    const info = cli(port, 'INFO', 'cpu');
    total += Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)[1]);
  }
  return total;
}

/** Masters and the slot ranges they own. */
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

async function main() {
  const standalone = await startRedis();
  const cluster = await startCluster();
  const standalonePort = Number(/:(\d+)\//.exec(standalone.url)[1]);
  const rows = { embedded: [], standalone: [], cluster: [] };
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      for (const [name, peer, url, ports] of [
        ['embedded', 'gateway', '', []],
        ['standalone', 'gateway-cluster', standalone.url, [standalonePort]],
        ['cluster', 'gateway-cluster', cluster.url, cluster.ports],
      ]) {
        process.stderr.write(`  round ${r}/${ROUNDS} ${name}… `);
        const before = ports.length ? redisCpu(ports) : 0;
        const res = await measureFanout(peer, SUBSCRIBERS, { redisUrl: url, targetDeliveries: 200_000 });
        const redisSeconds = ports.length ? redisCpu(ports) - before : 0;
        const messages = res.single.messages + res.burst8.messages;
        rows[name].push({ single: res.single.perCpuSec, burst8: res.burst8.perCpuSec, redisUsPerMessage: ports.length ? (redisSeconds * 1e6) / messages : 0 });
        console.error(`${Math.round(res.single.perCpuSec / 1000)}k single, ${Math.round(res.burst8.perCpuSec / 1000)}k burst8 per gateway CPU-s${ports.length ? `, Redis ${((redisSeconds * 1e6) / messages).toFixed(0)} µs CPU per message` : ''}`);
      }
    }
    const names = {
      'chat rooms room-1 … room-3000': Array.from({ length: 3000 }, (_, i) => `rt:{chat:room-${i + 1}}`),
      'chat rooms by UUID (3000)': Array.from({ length: 3000 }, () => `rt:{chat:${require('node:crypto').randomUUID()}}`),
      'users user:<numeric id> (3000)': Array.from({ length: 3000 }, (_, i) => `rt:{user:${100000 + i}}`),
      'consultations signaling:c-<n> (3000)': Array.from({ length: 3000 }, (_, i) => `rt:{signaling:c-${i}}`),
    };
    const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    const col = (name, key) => rows[name].map((x) => x[key]);
    const k = (xs) => `${Math.round(median(xs) / 1000)}k (${xs.map((x) => Math.round(x / 1000)).join(', ')})`;
    console.log(`\n| 1,000 subscribers, one gateway replica | single broadcasts per gateway CPU-s | vs embedded | bursts of 8 | vs embedded | Redis CPU per published message |`);
    console.log('|---|---|---|---|---|---|');
    for (const name of ['embedded', 'standalone', 'cluster']) {
      console.log(`| ${name} | ${k(col(name, 'single'))} | ${(median(col(name, 'single')) / median(col('embedded', 'single'))).toFixed(2)} | ${k(col(name, 'burst8'))} | ${(median(col(name, 'burst8')) / median(col('embedded', 'burst8'))).toFixed(2)} | ${name === 'embedded' ? '—' : `${median(col(name, 'redisUsPerMessage')).toFixed(0)} µs`} |`);
    }
    console.log(`\n| channel names over 3 masters | per master | max / mean |\n|---|---|---|`);
    for (const [label, list] of Object.entries(names)) {
      const s = skew(cluster.ports[0], list);
      console.log(`| ${label} | ${s.perMaster.join(' / ')} | ${s.maxOverMean.toFixed(2)} |`);
    }
    console.log(`| presence (every key under {rt}) | one slot: ${skew(cluster.ports[0], ['{rt}:nodes']).perMaster.join(' / ')} | — |`);
  } finally {
    standalone.proc.kill('SIGKILL');
    cluster.stop();
  }
}

if (require.main === module) {
  runPinned();
  main().then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });
}
