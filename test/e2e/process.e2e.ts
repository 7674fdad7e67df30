import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import jwt from 'jsonwebtoken';
import { DEV_JWT_SECRET } from '../../src/config/config';
import { connect, refusal } from '../support/clients';
import { freePort, MAIN, ROOT, spawnGateway } from '../support/process';
import { TEST_SECRET, token } from '../support/tokens';

const run = promisify(execFile);

describe('the service as a process (node dist/main.js)', () => {
  it('starts in embedded mode with no configuration at all, warning loudly about the dev key', async () => {
    const gw = await spawnGateway({});
    try {
      expect(gw.stderr()).toMatch(/WARNING: JWT_SECRET is not set/);
      const ready = await fetch(`http://127.0.0.1:${gw.port}/readyz`);
      expect(await ready.json()).toMatchObject({ status: 'ready', mode: 'embedded' });
      const devToken = jwt.sign({ sub: 'x', role: 'authority' }, DEV_JWT_SECRET, { expiresIn: 60 });
      const client = await connect(`ws://127.0.0.1:${gw.port}/api/alerts/subscribe?token=${devToken}`);
      await client.close();
    } finally {
      gw.child.kill('SIGKILL');
    }
  });

  it.each([
    [{ PORT: 'eighty' }, /^realtime-gateway: invalid configuration: PORT: must be a whole number/],
    [{ HEARTBEAT_INTERVAL_MS: '-5' }, /HEARTBEAT_INTERVAL_MS/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL: must be one of/],
    [{ LISTEN_BACKLOG: '0' }, /LISTEN_BACKLOG: must be at least 1/],
    [{ REDIS_URL: 'localhost:6379' }, /REDIS_URL: must be redis:\/\/host:6379\/0/],
    [{ ALLOWED_ORIGINS: 'not a url' }, /ALLOWED_ORIGINS/],
    [{ NODE_ENV: 'production' }, /JWT_SECRET: is required when NODE_ENV=production/],
    [{ JWT_PUBLIC_KEY: 'garbage' }, /JWT_PUBLIC_KEY: is not a PEM public key/],
    [{ WEBHOOK_URL: 'https://backend.internal/events' }, /WEBHOOK_SECRET: is required when WEBHOOK_URL is set/],
    [
      { WEBHOOK_URL: 'https://backend.internal/events', WEBHOOK_SECRET: `whsec_${Buffer.alloc(32).toString('base64')}`, WEBHOOK_EVENTS: 'channel.opened' },
      /WEBHOOK_EVENTS: "channel.opened" is not an event; valid: channel.occupied, /,
    ],
  ])('refuses to start with %j, in one line naming the variable', async (env, message) => {
    const gw = await spawnGateway({ PORT: String(await freePort()), ...env }, { waitForListening: false });
    expect(await gw.exited).toBe(1);
    const lines = gw.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });

  it.each([
    ['Node\'s 511 by default', {}, 511],
    // Below 128, the smallest somaxconn of any Linux: the kernel cannot be what made the queue this size.
    ['LISTEN_BACKLOG when set', { LISTEN_BACKLOG: '100' }, 100],
  ])('the public listener\'s accept queue is %s (as the kernel reports it, capped by net.core.somaxconn)', async (_name, env, backlog) => {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, ...env });
    try {
      const somaxconn = Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8')).trim());
      // ss lists a listening socket's accept-queue limit in its Send-Q column.
      const { stdout } = await run('ss', ['-ltnH', `sport = :${gw.port}`]);
      const [, , sendQ] = stdout.trim().split(/\s+/);
      expect(Number(sendQ)).toBe(Math.min(backlog, somaxconn));
    } finally {
      gw.child.kill('SIGKILL');
    }
  });

  it('says when the kernel caps LISTEN_BACKLOG (net.core.somaxconn), and listens with what it got', async () => {
    const somaxconn = Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8')).trim());
    expect(somaxconn).toBeLessThan(65_535); // LISTEN_BACKLOG's own maximum: a host allowing more cannot cap it
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, LISTEN_BACKLOG: String(somaxconn + 1) });
    try {
      const warning = gw.stdout.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.event === 'listen_backlog_capped');
      expect(warning).toMatchObject({ level: 'warn', listen_backlog: somaxconn + 1, somaxconn });
      expect(warning?.msg).toMatch(/raise net\.core\.somaxconn to at least/);
      const { stdout } = await run('ss', ['-ltnH', `sport = :${gw.port}`]);
      expect(Number(stdout.trim().split(/\s+/)[2])).toBe(somaxconn);
    } finally {
      gw.child.kill('SIGKILL');
    }
  });

  it.each([['PORT'], ['INTERNAL_PORT']])('a taken %s: one line on stderr naming the port and the variable to change, nothing more on stdout', async (variable) => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, [variable]: String(port) }, { waitForListening: false });
      expect(await gw.exited).toBe(1);
      expect(gw.stderr().trim().split('\n')).toEqual([`realtime-gateway: port ${port} (${variable}) is already in use on 127.0.0.1: stop what listens there, or set ${variable} to a free port`]);
      // A terminal shows stdout's log lines too: the failure is not told a second time there.
      expect(gw.stdout.join('\n')).not.toMatch(/EADDRINUSE|already in use/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('reports every bad variable at once, one line each, and warns about near-miss names', async () => {
    const gw = await spawnGateway({ PORT: 'eighty', LOG_LEVEL: 'loud', REDIS_URL: 'localhost:6379' }, { waitForListening: false });
    expect(await gw.exited).toBe(1);
    expect(gw.stderr().trim().split('\n').sort()).toEqual([
      expect.stringMatching(/^realtime-gateway: invalid configuration: LOG_LEVEL: must be one of/),
      expect.stringMatching(/^realtime-gateway: invalid configuration: PORT: must be a whole number/),
      expect.stringMatching(/^realtime-gateway: invalid configuration: REDIS_URL: must be redis:\/\//),
    ]);
    // A typo of REDIS_URL would silently give embedded mode: it is named at start, without its value.
    const typo = await spawnGateway({ JWT_SECRET: TEST_SECRET, REDIS_URI: 'redis://127.0.0.1:1/0' });
    try {
      const warning = typo.stdout.map((l) => JSON.parse(l) as { event?: string; msg?: string }).find((l) => l.event === 'config_warning');
      expect(warning?.msg).toBe('REDIS_URI is not a setting of this service and is ignored: did you mean REDIS_URL?');
      expect(typo.stdout.join('\n')).not.toContain('127.0.0.1:1/0');
    } finally {
      typo.child.kill('SIGKILL');
    }
  });

  it('never echoes a secret in a configuration error', async () => {
    const gw = await spawnGateway({ JWT_SECRET: 'sup3r-s3cret-value-sup3r-s3cret-value', JWT_PUBLIC_KEY: 'also-secret' }, { waitForListening: false });
    expect(await gw.exited).toBe(1);
    expect(gw.stderr()).not.toMatch(/sup3r|also-secret/);
  });

  it('prints a dev token with npm run token', async () => {
    const { stdout } = await run('node', [`${ROOT}/dist/cli/token.js`, '--role', 'authority', '--sub', 'alice'], {
      env: { PATH: process.env.PATH, JWT_SECRET: TEST_SECRET },
    });
    const claims = jwt.verify(stdout.trim(), TEST_SECRET) as jwt.JwtPayload;
    expect(claims).toMatchObject({ sub: 'alice', role: 'authority' });
    expect(claims.exp! - claims.iat!).toBe(3600);
    expect(MAIN).toMatch(/dist\/main\.js$/);
  });

  it('puts every --channel in the channels claim, and the token opens that consultation', async () => {
    const { stdout } = await run('node', [`${ROOT}/dist/cli/token.js`, '--role', 'doctor', '--channel', 'signaling:c-123', '--channel', 'chat:ward-7-*'], {
      env: { PATH: process.env.PATH, JWT_SECRET: TEST_SECRET },
    });
    expect(jwt.verify(stdout.trim(), TEST_SECRET)).toMatchObject({ role: 'doctor', channels: ['signaling:c-123', 'chat:ward-7-*'] });
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET });
    try {
      const doctor = await connect(`ws://127.0.0.1:${gw.port}/ws/signaling/c-123/doctor`, { protocols: ['bearer', stdout.trim()] });
      await doctor.close();
    } finally {
      gw.child.kill('SIGKILL');
      await gw.exited;
    }
  });

  it('puts --jti in the token, and POST /api/revoke with that jti refuses it (401 token_revoked)', async () => {
    const { stdout } = await run('node', [`${ROOT}/dist/cli/token.js`, '--role', 'authority', '--sub', 'alice', '--jti', 'laptop-7'], {
      env: { PATH: process.env.PATH, JWT_SECRET: TEST_SECRET },
    });
    const minted = stdout.trim();
    expect(jwt.verify(minted, TEST_SECRET)).toMatchObject({ sub: 'alice', jti: 'laptop-7', iat: expect.any(Number) });
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET });
    try {
      const url = `ws://127.0.0.1:${gw.port}/api/alerts/subscribe`;
      const client = await connect(url, { protocols: ['bearer', minted] });
      const res = await fetch(`http://127.0.0.1:${gw.internalPort}/api/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ jti: 'laptop-7' }),
      });
      expect(res.status).toBe(202);
      expect(await client.closed).toEqual({ code: 4001, reason: 'token revoked' });
      expect((await refusal(url, { protocols: ['bearer', minted] })).body.error).toBe('token_revoked');
    } finally {
      gw.child.kill('SIGKILL');
      await gw.exited;
    }
  });

  it('refuses a --jti the server API could not name', async () => {
    await expect(run('node', [`${ROOT}/dist/cli/token.js`, '--role', 'authority', '--jti', 'a\u0007b'], { env: { PATH: process.env.PATH, JWT_SECRET: TEST_SECRET } })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--jti must not hold control characters'),
    });
  });

  // Found by a new-user tour: `--sub "$USER"` with USER unset printed a token the door then refused (401 token_invalid).
  it('refuses an empty --sub (a token the gateway would refuse) instead of printing it', async () => {
    await expect(run('node', [`${ROOT}/dist/cli/token.js`, '--role', 'service', '--sub', ''], { env: { PATH: process.env.PATH, JWT_SECRET: TEST_SECRET } })).rejects.toMatchObject({
      code: 2,
      stdout: '',
      stderr: expect.stringContaining('--sub must not be empty'),
    });
  });

  it('explains how to call the token command when --role is missing', async () => {
    await expect(run('node', [`${ROOT}/dist/cli/token.js`], { env: { PATH: process.env.PATH } })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--role is required'),
    });
  });
});

describe('cluster mode while Redis cannot be reached at all', () => {
  it('starts anyway, stays alive, is not ready, and refuses alerts it cannot store with 503', async () => {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, REDIS_URL: `redis://127.0.0.1:${await freePort()}/0` });
    try {
      expect(gw.stdout.find((l) => l.includes('"event":"listening"'))).toContain('"mode":"cluster"');
      const base = `http://127.0.0.1:${gw.port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: 'redis_unavailable' });
      // Health on both ports; the server API on the internal one.
      expect((await fetch(`http://127.0.0.1:${gw.internalPort}/readyz`)).status).toBe(503);
      const post = await fetch(`http://127.0.0.1:${gw.internalPort}/api/alerts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ data: { level: 'red' } }),
      });
      expect(post.status).toBe(503);
      expect(post.headers.get('retry-after')).toBe('2');
      expect(await post.json()).toMatchObject({ error: 'redis_unavailable' });
    } finally {
      gw.child.kill('SIGKILL');
    }
  });
});
