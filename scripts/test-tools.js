#!/usr/bin/env node
// `npm test` runs this first (pretest): every system tool a suite needs must be there, or the suite would fail
// before any assertion. What is missing is installed with apt-get when this runs as root (or with passwordless
// sudo) on Debian/Ubuntu, with one line of progress; otherwise it stops at once with the exact command to run.
'use strict';
const { spawnSync } = require('node:child_process');
const { accessSync, constants, appendFileSync, readFileSync } = require('node:fs');
const { delimiter, join } = require('node:path');
const { tmpdir } = require('node:os');

const TOOLS = [
  { bin: 'redis-server', pkg: 'redis-server', needs: 'the Redis, Sentinel and Redis Cluster topologies the tests start' },
  { bin: 'redis-cli', pkg: 'redis-tools', needs: 'creating the test Redis Cluster' },
  { bin: 'promtool', pkg: 'prometheus', needs: 'checking /metrics and the alerting rules' },
  { bin: '/usr/bin/chromium', pkg: 'chromium', needs: 'the demo, SDK and admin console tests (playwright-core drives it)' },
  { bin: 'haproxy', pkg: 'haproxy', needs: 'the rolling restart behind docs/examples/haproxy.cfg and npm run cluster' },
  { bin: 'curl', pkg: 'curl', needs: 'running the commands npm run cluster prints' },
  { bin: 'turnserver', pkg: 'coturn', needs: 'the TURN server the ice-servers credentials are checked against (test/e2e/turn.e2e.ts)' },
  { bin: 'turnutils_uclient', pkg: 'coturn', needs: 'allocating TURN relays with those credentials' },
  { bin: '/usr/sbin/squid', pkg: 'squid', needs: 'the forward proxy that blocks WebSocket, through which the SDK and the demo fall back to SSE' },
  { bin: 'openssl', pkg: 'openssl', needs: 'the throwaway CA and certificate of the test push service (test/support/push-service.ts)' },
  { bin: 'ss', pkg: 'iproute2', needs: 'reading the gateway\'s listen backlog as the kernel sees it (test/e2e/process.e2e.ts)' },
  { bin: 'python3', pkg: 'python3', needs: 'running the Python webhook receiver of docs/deploy.md against the gateway' },
];

function found(bin) {
  const candidates = bin.includes('/') ? [bin] : (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, bin));
  return candidates.some((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const missing = TOOLS.filter((tool) => !found(tool.bin));
if (missing.length === 0) process.exit(0);

const packages = [...new Set(missing.map((tool) => tool.pkg))];
const command = `apt-get install -y --no-install-recommends ${packages.join(' ')}`;
// TEST_TOOLS_NO_INSTALL=1: only report (the test of this script, or a machine you do not want changed).
const mayInstall = !process.env.TEST_TOOLS_NO_INSTALL;
const root = mayInstall && typeof process.getuid === 'function' && process.getuid() === 0;
const sudo = mayInstall && !root && found('sudo') && spawnSync('sudo', ['-n', 'true']).status === 0;
if (!found('apt-get') || (!root && !sudo)) {
  console.error(`test setup: missing ${missing.map((t) => `${t.bin} (${t.needs})`).join('; ')}.`);
  console.error(`test setup: install them, then run npm test again:  sudo apt-get update && sudo ${command}`);
  process.exit(1);
}

const log = join(tmpdir(), 'realtime-gateway-test-setup.log');
console.error(`test setup: installing ${packages.join(', ')} with apt-get (needed for ${missing.map((t) => t.needs).join('; ')}); output in ${log}`);
const run = (args) => {
  const [cmd, rest] = sudo ? ['sudo', ['-n', ...args]] : [args[0], args.slice(1)];
  const result = spawnSync(cmd, rest, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, encoding: 'utf8' });
  appendFileSync(log, `$ ${args.join(' ')}\n${result.stdout ?? ''}${result.stderr ?? ''}\n`);
  return result.status === 0;
};
if (!run(['apt-get', 'update']) || !run(['apt-get', 'install', '-y', '--no-install-recommends', ...packages])) {
  const tail = readFileSync(log, 'utf8').trim().split('\n').slice(-8).join('\n');
  console.error(`test setup: apt-get failed (last lines of ${log}):\n${tail}`);
  console.error(`test setup: install them yourself, then run npm test again:  sudo apt-get update && sudo ${command}`);
  process.exit(1);
}
const still = missing.filter((tool) => !found(tool.bin));
if (still.length > 0) {
  console.error(`test setup: still missing after apt-get: ${still.map((t) => t.bin).join(', ')}`);
  process.exit(1);
}
console.error('test setup: done');
