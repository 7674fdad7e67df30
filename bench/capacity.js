#!/usr/bin/env node
// The capacity model of docs/scaling.md, recomputed from a bench run's figures (never hand-typed):
//   npm run capacity                          the recorded run (docs/bench-results.json)
//   npm run capacity -- bench/last-run.json   your own `npm run bench`
//   npm run capacity -- --write               also replace the table in docs/scaling.md
// Every assumption is a named constant below; docs/scaling.md explains each.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

/** What one gateway replica is: one Node process (one core) in a container with this much memory. */
const REPLICA_MEMORY_BYTES = 2 * 2 ** 30;
/** A replica's memory before any socket (runtime, code, buffers): measured 60–70 MB, rounded up. */
const REPLICA_BASELINE_BYTES = 80 * 2 ** 20;
/** Planned load, as a share of what was measured: headroom for bursts, GC, a lost replica's clients. */
const CPU_TARGET = 0.5;
const MEMORY_TARGET = 0.75;
/** A Redis process is single-threaded: a master is planned at this share of one core. */
const REDIS_CPU_TARGET = 0.5;
/** The smallest Redis Cluster that survives a master's loss: 3 masters (each with a replica). */
const MIN_CLUSTER_MASTERS = 3;
/**
 * Connections a replica holds at most, whatever its memory allows: the blast radius. A lost replica's clients
 * all reconnect at once to the others; at this size they are back within seconds (last column of the table).
 */
const MAX_CONNECTIONS_PER_REPLICA = 100_000;
const SIZES = [100_000, 1_000_000, 10_000_000];
/**
 * Kernel memory of the server's end of one idle TCP connection, when the run did not measure it: the slab objects
 * every socket takes (tcp_sock 2,368 B, socket inode 832, file 192, epoll entry 128, dentry 192 on Linux 6.x,
 * /proc/slabinfo). Idle sockets hold no buffer pages; a socket with data in flight holds up to its send buffer.
 * Charged to the container's memory cgroup like the process's own memory.
 */
const KERNEL_BYTES_PER_CONN = 3712;
/** The socket's dentry, which bench:scale leaves out of its slab delta (the dentry cache moves with every file). */
const DENTRY_BYTES = 192;
/** Descriptors a replica needs besides its sockets (as bench/scale.js reserves). */
const FD_RESERVE = 300;
/** The node of the 10M plan: a common large VM, less two cores and 4 GiB for the system and the ingress. */
const NODE = { cores: 16, memoryBytes: 64 * 2 ** 30, reservedCores: 2, reservedBytes: 4 * 2 ** 30 };
/** Ephemeral ports one proxy address has for one replica address and port: 1024–65535 once widened. */
const PORTS_WIDENED = 65535 - 1024 + 1;

/**
 * The workloads, each stated as rates per connection. `fanout(n, replicas)` says, per published message, how
 * many sockets receive it and on how many replicas they are. Bursts: which measured rate applies (isolated
 * messages, or messages arriving together).
 */
const WORKLOADS = [
  {
    name: 'broadcast: one 1 KB alert per second to every connection',
    channel: 'alerts',
    messagesPerSec: () => 1,
    fanout: (n, replicas) => ({ sockets: n, replicas }),
    burst: false,
  },
  {
    name: 'chat: rooms of 20, a 1 KB message per room every 10 s',
    channel: 'chat',
    messagesPerSec: (n) => n / 20 / 10,
    // Members land on replicas at random: a room's 20 members are on this many distinct replicas on average.
    fanout: (n, replicas) => ({ sockets: 20, replicas: replicas * (1 - (1 - 1 / replicas) ** 20) }),
    burst: false,
  },
  {
    name: 'notifications: one 1 KB message per user per minute (`users:[…]`)',
    channel: 'chat', // a user:<sub> channel is a pub/sub channel like a chat room's
    messagesPerSec: (n) => n / 60,
    fanout: () => ({ sockets: 1, replicas: 1 }),
    burst: false,
  },
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** The measured costs a model needs, from one bench run. */
function costs(run) {
  const size = run.fanout['single/10000'] ? 10000 : 1000;
  const gw = run.idle.gateway;
  const top = run.topologies;
  const fan = (topology, replicas, key) => median(top.fanout.filter((x) => x.topology === topology && x.replicas === replicas).map((x) => x[key]));
  const redis = (kind, topology, replicas, key) => median(top.redis.filter((x) => x.kind === kind && x.topology === topology && x.replicas === replicas).map((x) => x[key]));
  const perTopology = (topology) => {
    const channel = (kind) => {
      // Runs with one replica and with several (the most measured): linear in the replicas a message reaches,
      // a fixed part (the publish script) and a part per replica.
      const many = Math.max(...top.redis.filter((x) => x.kind === kind && x.topology === topology).map((x) => x.replicas));
      const [cpu1, cpuN] = [1, many].map((r) => redis(kind, topology, r, 'cpuUsPerMessage'));
      const [out1, outN] = [1, many].map((r) => redis(kind, topology, r, 'bytesOutPerMessage'));
      const perReplicaUs = Math.max(0, (cpuN - cpu1) / (many - 1));
      const runs = top.redis.filter((x) => x.kind === kind && x.topology === topology && x.replicas === many);
      const receivers = (x) => x.gatewayCpuUsPerMessage.slice(1);
      const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
      return {
        fixedUs: Math.max(0, cpu1 - perReplicaUs),
        perReplicaUs,
        bytesIn: redis(kind, topology, 1, 'bytesInPerMessage'),
        bytesOutPerReplica: Math.max(0, (outN - out1) / (many - 1)),
        replBytes: redis(kind, topology, 1, 'replBytesPerMessage'),
        // Gateway CPU on a replica that only receives, and the publisher's own share on top of that.
        receiveUs: median(runs.map((x) => mean(receivers(x)))),
        publishUs: Math.max(0, median(runs.map((x) => x.gatewayCpuUsPerMessage[0] - mean(receivers(x))))),
        replicasMeasured: many,
      };
    };
    const connect = top.connect.find((c) => c.topology === topology);
    return {
      // Deliveries per gateway CPU-second once the bus is crossed (two replicas), relative to embedded.
      singleRatio: fan(topology, 2, 'single') / fan('embedded', 1, 'single'),
      burstRatio: fan(topology, 2, 'burst8') / fan('embedded', 1, 'burst8'),
      alerts: channel('alerts'),
      chat: channel('chat'),
      connectUs: connect ? connect.cpuUsPerConnection : NaN,
    };
  };
  // Per-connection costs from the scale run when there is one (every connection its own user, as many as the
  // open-files limit allows; kernel memory measured), else from the bench's idle rows.
  const scale = run.scale?.peers?.gateway?.length ? run.scale : undefined;
  const sg = scale?.peers.gateway ?? [];
  const slab = median(sg.map((x) => x.kernelSlabPerConn));
  // A scale run on a busy machine (load average above its cores) keeps its memory figures, not its CPU ones:
  // contention inflated CPU time per upgrade 3–4× for every peer in the run of 2026-12-07 (load average 19 on 2 cores).
  const cores = Number(/^(\d+) ×/.exec(scale?.machine ?? '')?.[1] ?? 1);
  // Judged as the run began (its 1-minute load): the run's own processes load the figure taken after it, and the
  // 5- and 15-minute ones still carry whatever ran before.
  const quiet = scale && scale.loadAverage.before[0] <= cores;
  return {
    size,
    singlePerCpuSec: median(run.fanout[`single/${size}`].gateway),
    burstPerCpuSec: median(run.fanout[`burst8/${size}`].gateway),
    upgradesPerCpuSec: quiet ? median(sg.map((x) => x.upgradesPerCpuSec)) : median(gw.map((x) => x.upgradesPerCpuSec)),
    cpuSource: quiet ? 'bench:scale, connect phase' : `idle, running server${scale ? ' (bench:scale ran on a busy machine: its CPU figures are not used)' : ''}`,
    rssPerConn: scale ? median(sg.map((x) => x.rssPerConn)) : median(gw.map((x) => x.rssPerConn)),
    // The server's end: half of the slab both ends of a loopback connection took, plus the dentry left out.
    kernelPerConn: Number.isFinite(slab) && slab > 0 ? slab / 2 + DENTRY_BYTES : KERNEL_BYTES_PER_CONN,
    kernelMeasured: Number.isFinite(slab) && slab > 0,
    // Heartbeats and timers of idle connections: share of a core per connection.
    idleCorePerConn: quiet ? median(sg.map((x) => x.idleCoreShare / x.connections)) : undefined,
    memorySource: scale
      ? `bench:scale, ${scale.connections.toLocaleString('en')} connections, each its own user (${scale.date})`
      : `idle, ${run.idle.sockets.toLocaleString('en')} sockets${run.users ? '' : ', one user for all (before issue 26)'}`,
    standalone: perTopology('standalone'),
    cluster: perTopology('cluster'),
  };
}

/** One workload at one size: replicas, Redis, and which limit binds first. */
function plan(c, workload, n) {
  // The kernel's share of a socket is charged to the container too (memory cgroup), so it counts.
  const byMemory = Math.min(MAX_CONNECTIONS_PER_REPLICA, Math.floor((MEMORY_TARGET * (REPLICA_MEMORY_BYTES - REPLICA_BASELINE_BYTES)) / (c.rssPerConn + c.kernelPerConn)));
  const messages = workload.messagesPerSec(n);
  // Gateway CPU-seconds per second at `replicas` replicas, on the topology's bus.
  const gatewayCpu = (topo, replicas) => {
    const t = c[topo];
    const f = workload.fanout(n, replicas);
    const rate = (workload.burst ? c.burstPerCpuSec * t.burstRatio : c.singlePerCpuSec * t.singleRatio);
    const ch = t[workload.channel];
    return (messages * f.sockets) / rate + (messages * f.replicas * ch.receiveUs) / 1e6 + (messages * ch.publishUs) / 1e6;
  };
  const redisCores = (topo, replicas) => {
    const ch = c[topo][workload.channel];
    return (messages * (ch.fixedUs + ch.perReplicaUs * workload.fanout(n, replicas).replicas)) / 1e6;
  };
  // Replicas: enough for the memory, then more until each is at CPU_TARGET (the CPU need grows with the
  // replicas a message reaches, so iterate). Standalone first; Redis Cluster when one Redis is past its target.
  let topo = 'standalone';
  let replicas = Math.ceil(n / byMemory);
  const byMemoryReplicas = replicas;
  for (let i = 0; i < 50; i++) {
    topo = redisCores('standalone', replicas) <= REDIS_CPU_TARGET ? 'standalone' : 'cluster';
    const need = Math.ceil(gatewayCpu(topo, replicas) / CPU_TARGET);
    if (need <= replicas) break;
    replicas = need;
  }
  const cores = redisCores(topo, replicas);
  const masters = topo === 'standalone' ? 1 : Math.max(MIN_CLUSTER_MASTERS, Math.ceil(cores / REDIS_CPU_TARGET));
  const ch = c[topo][workload.channel];
  const reach = workload.fanout(n, replicas).replicas;
  const perReplica = n / replicas;
  // A replica lost: its clients come back on the others, at their upgrade rate with the CPU they have left.
  const readmitSeconds = perReplica / Math.max(1, replicas - 1) / (c.upgradesPerCpuSec * (1 - CPU_TARGET));
  // With MAX_CONNECTIONS_PER_USER every connect and close is a script on the one `{rt}` slot: one Redis core.
  const seatConnectsPerSec = 1e6 / c[topo].connectUs;
  return {
    n,
    replicas,
    binds: replicas > byMemoryReplicas ? 'gateway CPU' : byMemory === MAX_CONNECTIONS_PER_REPLICA ? 'connections per replica cap' : 'gateway memory',
    perReplica,
    deliveriesPerSec: messages * workload.fanout(n, replicas).sockets,
    messages,
    topo,
    masters,
    redisCores: cores,
    redisMBps: (messages * (ch.bytesIn + ch.bytesOutPerReplica * reach + ch.replBytes)) / 1e6,
    readmitSeconds,
    seatConnectsPerSec,
  };
}

const num = (x, digits = 0) => x.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const big = (n) => (n >= 1e6 ? `${n / 1e6}M` : `${n / 1e3}k`);

function table(run) {
  const c = costs(run);
  const lines = [];
  const topologySource = run.topologies.command ? `; Redis topology figures from \`${run.topologies.command}\` of ${run.topologies.date}` : '';
  lines.push(`From \`${run.command}\` of ${run.date} (${run.machine})${topologySource}; recompute with \`npm run capacity\`.`);
  lines.push('');
  lines.push('Measured costs the model uses:');
  lines.push('');
  lines.push('| cost | value | from |');
  lines.push('|---|---|---|');
  lines.push(`| deliveries per gateway CPU-second, isolated 1 KB messages | ${num(c.singlePerCpuSec)} | fan-out to ${num(c.size)} subscribers, embedded |`);
  lines.push(`| the same once the bus is crossed (two replicas) | standalone ×${c.standalone.singleRatio.toFixed(2)}, Redis Cluster ×${c.cluster.singleRatio.toFixed(2)} | topologies fan-out |`);
  lines.push(`| memory per idle connection | ${num(c.rssPerConn / 1024, 2)} KB RSS | ${c.memorySource} |`);
  lines.push(`| kernel memory per idle connection (server end) | ${num(c.kernelPerConn / 1024, 2)} KB | ${c.kernelMeasured ? 'bench:scale, /proc/slabinfo delta (half of both ends) + dentry' : 'slab object sizes (no measurement in this run)'} |`);
  lines.push(`| upgrades per gateway CPU-second (JWT verified${c.cpuSource.startsWith('bench:scale') ? ', a token each' : ''}) | ${num(c.upgradesPerCpuSec)} | ${c.cpuSource} |`);
  if (c.idleCorePerConn !== undefined) lines.push(`| idle CPU per 10,000 connections (default heartbeats) | ${num(c.idleCorePerConn * 1e4 * 100, 2)} % of a core | bench:scale, idle phase |`);
  for (const topo of ['standalone', 'cluster']) {
    const t = c[topo];
    const label = topo === 'cluster' ? 'Redis Cluster' : 'standalone Redis';
    lines.push(`| ${label}: Redis CPU per chat message, fixed + per receiving replica | ${t.chat.fixedUs.toFixed(1)} + ${t.chat.perReplicaUs.toFixed(1)} µs | topologies, 1 and ${t.chat.replicasMeasured} replicas |`);
    lines.push(`| ${label}: Redis CPU per alert (stream tailed), fixed + per replica | ${t.alerts.fixedUs.toFixed(1)} + ${t.alerts.perReplicaUs.toFixed(1)} µs | topologies |`);
    lines.push(`| ${label}: gateway CPU to receive a message it delivers to nobody / to publish one | ${t.chat.receiveUs.toFixed(1)} / ${t.chat.publishUs.toFixed(1)} µs | topologies, receiving / publishing replica |`);
    lines.push(`| ${label}: Redis bytes per chat message: in, out per replica, replication | ${num(t.chat.bytesIn)} / ${num(t.chat.bytesOutPerReplica)} / ${num(t.chat.replBytes)} | topologies |`);
    lines.push(`| ${label}: Redis CPU per connection with a per-user limit (open + close) | ${t.connectUs.toFixed(1)} µs | topologies, connect cost |`);
  }
  lines.push('');
  lines.push(`Plan: a replica is one core and ${REPLICA_MEMORY_BYTES / 2 ** 30} GiB, loaded to ${CPU_TARGET * 100}% CPU and ${MEMORY_TARGET * 100}% memory, at most ${num(MAX_CONNECTIONS_PER_REPLICA)} connections; a Redis master to ${REDIS_CPU_TARGET * 100}% of its core.`);
  lines.push('');
  lines.push('| workload | connections | replicas (bound by) | per replica | deliveries/s | messages/s | Redis | Redis CPU | Redis traffic | a lost replica\'s clients back in | connects/s with per-user limits (one slot) |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const workload of WORKLOADS) {
    for (const n of SIZES) {
      const p = plan(c, workload, n);
      lines.push(`| ${workload.name} | ${big(n)} | ${num(p.replicas)} (${p.binds}) | ${num(p.perReplica)} | ${num(p.deliveriesPerSec)} | ${num(p.messages)} | ${p.topo === 'standalone' ? 'one (standalone or Sentinel)' : `Cluster, ${p.masters} masters`} | ${num(p.redisCores, 2)} cores | ${num(p.redisMBps, 1)} MB/s | ${num(p.readmitSeconds, 1)} s | ${num(p.seatConnectsPerSec)} |`);
    }
  }
  lines.push('');
  lines.push(...densityAndPlans(c));
  lines.push('');
  lines.push('Against the published figures of the peers (their numbers as published; ours from this run):');
  lines.push('');
  lines.push('| | memory per connection | memory for 1M connections | deliveries per core-second | how measured |');
  lines.push('|---|---|---|---|---|');
  lines.push('| Centrifugo, 1M connections (2020) | ≈30 KB | 27 GB over 20 pods | ≈11.7k (28M messages/min on 40 CPU) | under load: ~100 B protobuf messages, 2 channels per connection, 200k/min reconnect churn, Redis sharded over 5 instances |');
  lines.push('| Phoenix, 2M connections on one host (2015) | ≤ 35 KB (450k filled 15 GB) | — | ≈50k (a 2M broadcast in about 1 s on 40 cores) | one chat room, idle connections, one broadcast at a time |');
  lines.push(`| this gateway, this run | ${num(c.rssPerConn / 1024, 1)} KB RSS + ${num(c.kernelPerConn / 1024, 1)} KB kernel, idle | ${num(((c.rssPerConn + c.kernelPerConn) * 1e6) / 2 ** 30, 1)} GB + ${REPLICA_BASELINE_BYTES / 2 ** 20} MB per replica | ${num(c.singlePerCpuSec)} isolated, ${num(c.burstPerCpuSec)} in bursts of 8 (1 KB, ${num(c.size)} subscribers) | idle sockets for memory; closed-loop fan-out for deliveries, no reconnect churn |`);
  return lines.join('\n');
}

/**
 * Connections per GiB and per core, and the three reference deployments: 100,000 per replica, a million on one
 * node, ten million on a cluster, each with the limits it must raise (docs/deploy.md explains each).
 */
function densityAndPlans(c) {
  const perConn = c.rssPerConn + c.kernelPerConn;
  const lines = [];
  lines.push('Density, from the measured costs (idle connections; messages add their deliveries\' CPU):');
  lines.push('');
  lines.push('| measure | value |');
  lines.push('|---|---|');
  lines.push(`| connections per GiB (process RSS + kernel, all of it) | ${num(2 ** 30 / perConn)} |`);
  lines.push(`| connections per GiB at the plan's ${MEMORY_TARGET * 100}% memory target | ${num((MEMORY_TARGET * 2 ** 30) / perConn)} |`);
  if (c.idleCorePerConn) lines.push(`| idle connections per core at the plan's ${CPU_TARGET * 100}% CPU target (heartbeats only) | ${num(CPU_TARGET / c.idleCorePerConn)} |`);
  lines.push(`| connections per core receiving one 1 KB broadcast a second, at ${CPU_TARGET * 100}% CPU | ${num(CPU_TARGET * c.singlePerCpuSec)} |`);
  lines.push(`| connections a core takes back per second after a drain, at ${CPU_TARGET * 100}% CPU (a token verified each) | ${num(CPU_TARGET * c.upgradesPerCpuSec)} |`);
  lines.push('');
  const replicaMemory = (n) => REPLICA_BASELINE_BYTES + n * perConn;
  const gib = (bytes) => `${num(bytes / 2 ** 30, 1)} GiB`;
  const perReplica = MAX_CONNECTIONS_PER_REPLICA;
  const proxiesPerReplica = Math.ceil(perReplica / PORTS_WIDENED);
  const replicas1M = Math.ceil(1e6 / perReplica);
  const nodeReplicas = Math.min(NODE.cores - NODE.reservedCores, Math.floor((MEMORY_TARGET * (NODE.memoryBytes - NODE.reservedBytes)) / replicaMemory(perReplica)));
  const replicas10M = Math.ceil(1e7 / perReplica);
  const nodes10M = Math.ceil(replicas10M / nodeReplicas);
  lines.push('Reference deployments (idle memory; add the CPU the workload table above asks for):');
  lines.push('');
  lines.push('| plan | processes | memory | limits to raise (docs/deploy.md) |');
  lines.push('|---|---|---|---|');
  lines.push(
    `| ${num(perReplica)} connections per replica | 1 replica, one core | ${gib(replicaMemory(perReplica))} (${num((perReplica * c.rssPerConn) / 2 ** 20)} MB process, ${num((perReplica * c.kernelPerConn) / 2 ** 20)} MB kernel, ${REPLICA_BASELINE_BYTES / 2 ** 20} MB baseline): a ${gib(replicaMemory(perReplica) / MEMORY_TARGET)} limit at ${MEMORY_TARGET * 100}% | ` +
      `nofile ≥ ${num(perReplica + FD_RESERVE)}; ≥ ${proxiesPerReplica} proxy addresses in front of it (one address reaches one replica port on at most ${num(PORTS_WIDENED)} ephemeral ports, with ip_local_port_range widened to 1024–65535) |`,
  );
  lines.push(
    `| 1M connections on one node | ${replicas1M} replicas of ${num(perReplica)} (${replicas1M} cores + the system's) | ${gib(replicas1M * replicaMemory(perReplica))} process and kernel; ${gib((replicas1M * replicaMemory(perReplica)) / MEMORY_TARGET)} to plan | ` +
      `nofile per replica as above; fs.file-max ≥ ${num(1e6 + replicas1M * FD_RESERVE)} plus the proxy's (about ${num(2e6)} more if the proxy runs on the node: it holds both sides); conntrack (nf_conntrack_max) ≥ the connections it tracks; ≥ ${Math.ceil(1e6 / PORTS_WIDENED)} proxy→replica address pairs; net.ipv4.tcp_mem high enough for the data in flight (1 KB queued to each of 1M sockets is at least 250,000 pages of 4 KB) |`,
  );
  lines.push(
    `| 10M connections, a cluster | ${num(replicas10M)} replicas on ${nodes10M} nodes of ${NODE.cores} cores and ${NODE.memoryBytes / 2 ** 30} GiB (${nodeReplicas} replicas each; ${NODE.reservedCores} cores and ${NODE.reservedBytes / 2 ** 30} GiB left to the system) | ${gib(replicas10M * replicaMemory(perReplica))} in all | ` +
      `per node as for 1M; the load balancers spread 10M clients over ≥ ${Math.ceil(1e7 / PORTS_WIDENED)} proxy→replica address pairs; Redis as the workload table says (a Cluster for chat and notifications) |`,
  );
  return lines;
}

module.exports = { costs, plan, table, WORKLOADS };

if (require.main === module) {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--')) ?? join(__dirname, '..', 'docs', 'bench-results.json');
  let run;
  try {
    run = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    console.error(`capacity: cannot read ${file} (${error.code ?? error.message}); run \`npm run bench\` first, or pass a results file`);
    process.exit(2);
  }
  if (!run.topologies) {
    console.error(`capacity: ${file} has no Redis topology figures; it comes from a bench older than issue 15: run \`npm run bench\` again`);
    process.exit(2);
  }
  const text = table(run);
  console.log(text);
  if (args.includes('--write')) {
    const doc = join(__dirname, '..', 'docs', 'scaling.md');
    const current = readFileSync(doc, 'utf8');
    writeFileSync(doc, current.replace(/<!-- capacity:start -->[\s\S]*<!-- capacity:end -->/, `<!-- capacity:start -->\n${text}\n<!-- capacity:end -->`));
    console.error(`capacity: wrote ${doc}`);
  }
}
