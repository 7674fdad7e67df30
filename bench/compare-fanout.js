// Before/after of the path endpoint's fan-out (alerts to 1,000 subscribers, single and bursts of 8) between two
// built checkouts, alternating rounds:  node bench/compare-fanout.js <before-root> <after-root> [--cluster]
// --cluster: the gateway in cluster mode on a throwaway redis-server (the bus's tail and its burst reads).
'use strict';
const path = require('node:path');
const { runPinned, startRedis } = require('./fanout');

const [a, b] = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
const cluster = process.argv.includes('--cluster');
const ROUNDS = 3;
runPinned(1);
(async () => {
  const redis = cluster ? await startRedis() : undefined;
  if (redis) process.on('exit', () => redis.proc.kill('SIGKILL'));
  const res = { [a]: [], [b]: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const root of [a, b]) {
      const { measureFanout } = require(path.join(root, 'bench', 'fanout.js'));
      const x = await measureFanout(cluster ? 'gateway-cluster' : 'gateway', 1000, { redisUrl: redis?.url ?? '', targetDeliveries: 300_000 });
      res[root].push(x);
      console.error(root, Math.round(x.single.perCpuSec), Math.round(x.burst8.perCpuSec));
    }
  }
  const med = (xs) => xs.sort((p, q) => p - q)[xs.length >> 1];
  for (const mode of ['single', 'burst8']) {
    const A = med(res[a].map((x) => x[mode].perCpuSec)), B = med(res[b].map((x) => x[mode].perCpuSec));
    console.log(`${mode}: before ${Math.round(A / 1000)}k, after ${Math.round(B / 1000)}k, after/before ${(B / A).toFixed(2)}`);
  }
  process.exit(0);
})();
