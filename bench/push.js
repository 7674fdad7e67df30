// What Web Push costs the gateway: `npm run bench:push [-- --rounds N]`.
//   Gateway CPU per push sent: 1,000 subscriptions (100 users x 10, real P-256 keys) registered over HTTP, then
//   `rounds` calls of PUSH_OUT.pushToUsers for the 100 users (through test/support/push-harness.js, as the alerts
//   code calls it), each push encrypted (RFC 8291), VAPID-signed and POSTed over HTTPS (kept-alive) to a local
//   push service answering 201 at once; the gateway's CPU (process_cpu_seconds_total) from the first push to the
//   last answer, over the pushes sent. The push service only counts (decryption and JWT checks: test/e2e/push.e2e.ts).
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const { createECDH, generateKeyPairSync, randomBytes, randomUUID } = require('node:crypto');
const { mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { createServer } = require('node:https');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const jwt = require('jsonwebtoken');

const ROOT = join(__dirname, '..');
const SECRET = 'bench-secret-of-at-least-thirty-two-bytes!!';
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 10;

function vapid() {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return { publicKey: Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]).toString('base64url'), privateKey: jwk.d };
}

async function pushService() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-push-'));
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=bench CA', '-addext', 'basicConstraints=critical,CA:TRUE');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext');
  let count = 0;
  let waiter;
  const server = createServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.crt')) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(201, { 'Content-Length': 0 }).end();
      count++;
      if (waiter && count >= waiter.total) (waiter.resolve(), (waiter = undefined));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ca: join(dir, 'ca.crt'),
    origin: `https://127.0.0.1:${server.address().port}`,
    until: (total) => (count >= total ? Promise.resolve() : new Promise((resolve) => (waiter = { total, resolve }))),
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => (rmSync(dir, { recursive: true, force: true }), resolve())))),
  };
}

function startGateway(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'test', 'support', 'push-harness.js')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: '127.0.0.1', PORT: '0', INTERNAL_HOST: '127.0.0.1', INTERNAL_PORT: '0', LOG_LEVEL: 'info', JWT_SECRET: SECRET, ...env },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let buffered = '';
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const line = buffered.split('\n').find((l) => l.includes('"event":"listening"'));
      if (line) {
        const { port, internal_port: internalPort } = JSON.parse(line);
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        resolve({ child, port, internalPort });
      }
    });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}`)));
  });
}

async function cpuSeconds(gw) {
  const text = await (await fetch(`http://127.0.0.1:${gw.internalPort}/metrics`)).text();
  return Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)[1]);
}

function push(gw, users, payload) {
  const rid = randomUUID();
  return new Promise((resolve) => {
    const listener = (m) => m.rid === rid && (gw.child.off('message', listener), resolve());
    gw.child.on('message', listener);
    gw.child.send({ op: 'push', rid, users, payload });
  });
}

async function main() {
  const keys = vapid();
  const service = await pushService();
  const gw = await startGateway({ NODE_EXTRA_CA_CERTS: service.ca, VAPID_PUBLIC_KEY: keys.publicKey, VAPID_PRIVATE_KEY: keys.privateKey, VAPID_SUBJECT: 'mailto:bench@example.com' });
  try {
    const users = Array.from({ length: 100 }, (_, i) => `user-${i}`);
    for (const user of users) {
      const token = jwt.sign({ sub: user, role: 'authority' }, SECRET, { expiresIn: 3600 });
      for (let d = 0; d < 10; d++) {
        const ecdh = createECDH('prime256v1');
        ecdh.generateKeys();
        const body = { endpoint: `${service.origin}/push/${user}-${d}`, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') } };
        const res = await fetch(`http://127.0.0.1:${gw.port}/push/subscriptions`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
        if (res.status !== 201) throw new Error(`subscribe answered ${res.status}`);
      }
    }
    const payload = { type: 'alert', id: '1732700000000-0', data: { level: 'critical', text: 'Ward 3: oxygen supply alarm', ward: 3 } };
    // Warm-up: connections to the push service, the JIT.
    await push(gw, users, payload);
    await service.until(1000);
    const cpu0 = await cpuSeconds(gw);
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) await push(gw, users, payload);
    await service.until(1000 * (rounds + 1));
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = (await cpuSeconds(gw)) - cpu0;
    const pushes = 1000 * rounds;
    const result = { pushes, wall_s: +wall.toFixed(2), pushes_per_s: Math.round(pushes / wall), gateway_cpu_s: +cpu.toFixed(2), gateway_cpu_us_per_push: Math.round((cpu / pushes) * 1e6) };
    console.log(JSON.stringify(result));
  } finally {
    gw.child.kill('SIGTERM');
    await service.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
