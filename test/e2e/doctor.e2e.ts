import { execFile } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { connect as tcpConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { freePort, ROOT, spawnGateway } from '../support/process';
import { generateSigningKey, signJwt } from '../support/identity';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(30_000);

const DOCTOR = join(ROOT, 'dist', 'cli', 'doctor.js');

/** Runs the doctor as a user would; resolves with its exit code and output (no colour: not a TTY). */
function doctor(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DOCTOR, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

/** What a middlebox on the way does to a request: to upgrades only, or to every request. */
type Blocking = 'reset' | 'hold' | 'page' | 'reset everything' | 'reset, and buffer answers';

/**
 * A TCP middlebox in front of a gateway, as networks that break WebSocket have: plain HTTP goes through, a
 * WebSocket upgrade is reset (RST) before any answer, held without one, or answered with the proxy's own HTML
 * page; or (`reset everything`) every request is reset; or (`reset, and buffer answers`) upgrades are reset and
 * the answers to plain requests are held after their head, as a buffering proxy holds a response it waits to end.
 */
async function middlebox(targetPort: number, blocking: Blocking): Promise<{ port: number; requests: string[]; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  const server = createServer((client: Socket) => {
    sockets.add(client);
    client.on('error', () => undefined).on('close', () => sockets.delete(client));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      client.off('data', onData);
      const lines = head.subarray(0, end).toString('latin1').split('\r\n');
      const upgrade = lines.some((l) => /^upgrade:\s*websocket$/i.test(l));
      requests.push(`${upgrade ? 'upgrade' : 'plain'} ${lines[0].split(' ')[1].replace(/\?.*$/, '')}`); // never the query: a token may be there
      if (blocking === 'reset everything' || (upgrade && blocking.startsWith('reset'))) return void client.resetAndDestroy();
      if (upgrade && blocking === 'hold') return;
      if (upgrade && blocking === 'page') {
        const page = '<html><head><title>Access denied</title></head><body>WebSocket is not allowed by your network policy.</body></html>';
        return void client.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: ${page.length}\r\nConnection: close\r\n\r\n${page}`);
      }
      const upstream = tcpConnect(targetPort, '127.0.0.1', () => {
        upstream.write(head);
        client.pipe(upstream);
        if (blocking !== 'reset, and buffer answers') return void upstream.pipe(client);
        let answer = Buffer.alloc(0);
        let headSent = false;
        upstream.on('data', (chunk: Buffer) => {
          if (headSent) return; // held (a buffer that never fills)
          answer = Buffer.concat([answer, chunk]);
          const headEnd = answer.indexOf('\r\n\r\n');
          if (headEnd === -1) return;
          headSent = true;
          client.write(answer.subarray(0, headEnd + 4));
        });
      });
      sockets.add(upstream);
      upstream.on('error', () => client.destroy()).on('close', () => (client.destroy(), sockets.delete(upstream)));
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    requests,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('realtime-gateway doctor', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('passes a healthy endpoint: open, ping round trip, clean close, exit 0', async () => {
    const { code, out } = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({ role: 'authority' }));
    expect(out).toMatch(/✓ WebSocket open \(subprotocol "bearer"\)/);
    expect(out).toMatch(/✓ ping round trip \d+\.\d ms/);
    expect(out).toContain('✓ closed cleanly (1000)');
    expect(code).toBe(0);
  });

  it('runs as `npx realtime-gateway doctor` too', async () => {
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      execFile('npx', ['--no-install', 'realtime-gateway', 'doctor', gw.ws('/api/alerts/subscribe'), '--token', token()], { cwd: ROOT }, (error, out) =>
        error ? reject(error) : resolve({ stdout: out }),
      ),
    );
    expect(stdout).toContain('healthy');
  });

  it('says when nothing listens on the port, and names the port to check', async () => {
    const port = await freePort();
    const { code, out } = await doctor(`ws://127.0.0.1:${port}/api/alerts/subscribe`);
    expect(out).toContain(`nothing is listening on 127.0.0.1:${port} (connection refused)`);
    expect(out).toContain(`→ is the gateway running, and is ${port} its public port? (npm start listens on PORT, default 8080)`);
    expect(out).toContain('1 problem found');
    expect(code).toBe(1);
  });

  it('the internal port: names the public port to use, not "fix the path"', async () => {
    const { code, out } = await doctor(gw.internal('/api/alerts/subscribe').replace('http:', 'ws:'), '--token', token());
    expect(out).toContain('✗ the server refused the upgrade: HTTP 404 unknown_path');
    expect(out).toContain(`→ ${gw.internalPort} is the gateway's internal port (INTERNAL_PORT): use its public port, ws://127.0.0.1:${gw.port}/api/alerts/subscribe`);
    expect(out).not.toContain('fix the path');
    expect(out).toContain('1 problem found');
    expect(code).toBe(1);
  });

  it('another HTTP service on the port: one problem, the port, not a proxy and not the path', async () => {
    const other = createHttpServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not Found</h1>'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const port = (other.address() as AddressInfo).port;
    try {
      const { code, out } = await doctor(`ws://127.0.0.1:${port}/api/alerts/subscribe`, '--token', token());
      expect(out).toContain(`✗ 127.0.0.1:${port} is not the gateway: the upgrade got HTTP 404 and GET /sse HTTP 404, neither the gateway's JSON`);
      expect(out).toContain('→ check the port: the WebSocket endpoints are on the public port (PORT, default 8080); behind a proxy, it passes neither WebSocket nor /sse to the gateway');
      expect(out).not.toContain('fix the path');
      expect(out).toContain('1 problem found');
      expect(code).toBe(1);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('a service on the port that does not speak HTTP (a Redis, say): one problem that names the port', async () => {
    const other = createServer((socket) => socket.on('error', () => undefined).on('data', () => socket.end('-ERR unknown command\r\n')));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const port = (other.address() as AddressInfo).port;
    try {
      const { code, out } = await doctor(`ws://127.0.0.1:${port}/api/alerts/subscribe`, '--token', token());
      expect(out).toContain(`✗ 127.0.0.1:${port} does not answer HTTP (`);
      expect(out).toContain('→ check the port: the WebSocket endpoints are on the public port (PORT, default 8080)');
      expect(out).toContain('1 problem found');
      expect(code).toBe(1);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('decodes a 404 with the known paths, and names a doubled prefix', async () => {
    const wrong = await doctor(gw.ws('/ws/alerts'), '--token', token());
    expect(wrong.out).toContain('HTTP 404 unknown_path');
    expect(wrong.out).toContain('/api/alerts/subscribe');
    expect(wrong.out).toContain('  fix the path: the WebSocket paths are /api/alerts/subscribe, /ws, /ws/chat/:room');
    expect(wrong.out).not.toContain('doubled prefix'); // nothing is doubled in /ws/alerts
    const doubled = await doctor(gw.ws('/api/api/alerts/subscribe'), '--token', token());
    expect(doubled.out).toMatch(/repeats the prefix \/api/);
    expect(doubled.out).toContain('a doubled prefix: the base URL already ends in that prefix');
    expect([wrong.code, doubled.code]).toEqual([1, 1]);
  });

  it('spots a bad token with the server (401 token_invalid) and an expired one without the key', async () => {
    const forged = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({}, { secret: 'another-secret-of-at-least-32-bytes!!' }));
    expect(forged.out).toContain('HTTP 401 token_invalid');
    const expired = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({}, { ttl: -30 }));
    expect(expired.out).toMatch(/✗ the token expired \d+ s ago/);
    expect(expired.out).toContain('HTTP 401 token_expired');
    const wrongRole = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({ role: 'patient' }));
    expect(wrongRole.out).toContain('role "patient" may not use the alerts endpoint (allowed: authority, admin)');
    expect([forged.code, expired.code, wrongRole.code]).toEqual([1, 1, 1]);
  });

  it('explains 401 token_revoked and 403 banned', async () => {
    const post = (path: string, body: unknown) =>
      fetch(gw.internal(path), { method: 'POST', headers: { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('/api/revoke', { jti: 'doctor-revoked' })).status).toBe(202);
    const revoked = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({ sub: 'rev', jti: 'doctor-revoked' }));
    expect(revoked.out).toContain('HTTP 401 token_revoked');
    expect(revoked.out).toContain('this token was revoked (POST /api/revoke');
    expect((await post('/api/disconnect', { user: 'doctor-banned', ban_seconds: 60 })).status).toBe(202);
    const banned = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({ sub: 'doctor-banned' }));
    expect(banned.out).toContain('HTTP 403 banned');
    expect(banned.out).toMatch(/this user is banned \(POST \/api\/disconnect with ban_seconds\); retry after \d+ s/);
    expect([revoked.code, banned.code]).toEqual([1, 1]);
  });

  it('says before connecting that a signaling token does not name the consultation, and decodes the 403 forbidden_channel', async () => {
    const stranger = await doctor(gw.ws('/ws/signaling/c-77/doctor'), '--token', token({ sub: 'dr', role: 'doctor', channels: ['signaling:c-1'] }));
    expect(stranger.out).toContain('✗ the token\'s "channels" claim does not name signaling:c-77');
    expect(stranger.out).toContain('npm run token -- --role <role> --channel signaling:c-77');
    expect(stranger.out).toContain('HTTP 403 forbidden_channel');
    expect(stranger.out).toContain('its "channels" claim must name it');
    expect(stranger.code).toBe(1);
    const named = await doctor(gw.ws('/ws/signaling/c-77/doctor'), '--token', token({ sub: 'dr', role: 'doctor', channels: ['signaling:c-*'] }));
    expect(named.out).toContain('✓ the token\'s channels claim names signaling:c-77');
    expect(named.code).toBe(0);
    const malformed = await doctor(gw.ws('/ws/chat/lobby'), '--token', token({ sub: 'u', role: 'user', channels: 'chat:lobby' }));
    expect(malformed.out).toContain('"channels" claim is not an array');
    expect(malformed.out).toContain('HTTP 401 token_invalid');
  });

  it('points out http:// and wss:// on a plain port', async () => {
    const http = await doctor(gw.http('/api/alerts/subscribe'), '--token', token());
    expect(http.out).toContain('http:// is for the HTTP endpoints; WebSockets use ws://');
    expect(http.code).toBe(0); // it checks ws:// instead, which is healthy
    const tls = await doctor(gw.ws('/api/alerts/subscribe').replace('ws://', 'wss://'), '--token', token());
    expect(tls.out).toContain('but that port speaks plain HTTP (no TLS)');
    expect(tls.code).toBe(1);
  });

  it('explains 431 headers_too_large (a token over 16 KB)', async () => {
    const { code, out } = await doctor(gw.ws('/api/alerts/subscribe'), '--token', token({ padding: 'x'.repeat(20_000) }));
    expect(out).toContain('HTTP 431 headers_too_large');
    expect(out).toContain('a shorter token (fewer claims) or fewer cookies');
    expect(code).toBe(1);
  });

  it('explains 426: a proxy in between that drops the Upgrade header', async () => {
    // A real relay that forwards the request without its Upgrade and Connection headers (a misconfigured proxy).
    const relay = createServer((client: Socket) => {
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        client.off('data', onData);
        const lines = head.subarray(0, end).toString('latin1').split('\r\n').filter((l) => !/^(upgrade|connection):/i.test(l));
        const upstream = tcpConnect(gw.port, '127.0.0.1', () => {
          upstream.write(`${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`);
          upstream.write(head.subarray(end + 4));
          client.pipe(upstream).pipe(client);
        });
        upstream.on('error', () => client.destroy());
      };
      client.on('data', onData);
      client.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = relay.address() as { port: number };
      const { code, out } = await doctor(`ws://127.0.0.1:${port}/api/alerts/subscribe`, '--token', token());
      expect(out).toContain('HTTP 426 upgrade_required');
      expect(out).toContain('drops the Upgrade and Connection headers');
      // Plain HTTP gets through that relay: SSE does.
      expect(out).toMatch(/✓ GET \/sse streams: its welcome arrived in \d+ ms/);
      expect(code).toBe(1);
    } finally {
      relay.close();
    }
  });

  describe('when something on the way blocks WebSocket', () => {
    const through = async (blocking: Blocking, path: string, jwt: string) => {
      const box = await middlebox(gw.port, blocking);
      try {
        return { ...(await doctor(`ws://127.0.0.1:${box.port}${path}`, '--token', jwt)), requests: box.requests };
      } finally {
        await box.stop();
      }
    };
    const fallsBack = /the SDK's \/ws client switches to SSE by itself/;

    it('an upgrade reset before any answer: tries GET /sse with the same token, which streams, and says the SDK falls back', async () => {
      const { code, out, requests } = await through('reset', '/ws', token({ sub: 'behind-proxy', role: 'user' }));
      expect(out).toContain('✗ the WebSocket upgrade got no HTTP answer');
      expect(out).toMatch(/✓ GET \/sse streams: its welcome arrived in \d+ ms/);
      expect(out).toMatch(fallsBack);
      expect(requests).toEqual(['upgrade /ws', 'plain /sse']);
      expect(code).toBe(1); // WebSocket itself is still blocked
    });

    it('an upgrade answered by a proxy\'s own page: not the gateway (not JSON), whose page is not repeated; the endpoint\'s channel over SSE', async () => {
      const { code, out, requests } = await through('page', '/api/alerts/subscribe', token({ sub: 'nurse', role: 'authority' }));
      expect(out).toContain('✗ the upgrade was answered HTTP 403 by something that is not the gateway');
      expect(out).not.toContain('Access denied');
      expect(out).toMatch(/✓ GET \/sse streams: its welcome arrived in \d+ ms, with alerts/);
      expect(out).toMatch(fallsBack);
      expect(out).toContain('subscribe to alerts');
      expect(requests).toEqual(['upgrade /api/alerts/subscribe', 'plain /sse']);
      expect(code).toBe(1);
    });

    it('an upgrade that never gets an answer: after the handshake timeout, the same', async () => {
      const { code, out } = await through('hold', '/ws/chat/lobby', token({ sub: 'waiting', role: 'user' }));
      expect(out).toContain('✗ the WebSocket upgrade got no HTTP answer');
      expect(out).toMatch(/✓ GET \/sse streams: its welcome arrived in \d+ ms, with chat:lobby/);
      expect(code).toBe(1);
    });

    it('says so when plain HTTP does not get through either, and promises no fallback: one cause, one problem', async () => {
      const { code, out, requests } = await through('reset everything', '/ws', token({ sub: 'cut-off', role: 'user' }));
      expect(out).toContain('✗ the WebSocket upgrade got no HTTP answer');
      expect(out).toContain('\n  GET /sse failed too');
      expect(out).not.toMatch(fallsBack);
      expect(out).toContain('1 problem found');
      expect(requests).toEqual(['upgrade /ws', 'plain /sse']);
      expect(code).toBe(1);
    });

    it('says when the stream opens but its events are held on the way (a buffering proxy): one problem', async () => {
      const { code, out } = await through('reset, and buffer answers', '/ws', token({ sub: 'buffered', role: 'user' }));
      expect(out).toContain('\n  GET /sse opened, but no event arrived within 5 s: something on the way buffers the stream');
      expect(out).toContain('turn response buffering off for /sse');
      expect(out).not.toMatch(fallsBack);
      expect(out).toContain('1 problem found');
      expect(code).toBe(1);
    });

    it('says which channel the stream refused, with its error', async () => {
      const { out } = await through('reset', '/api/alerts/subscribe', token({ sub: 'patient-1', role: 'patient' }));
      expect(out).toMatch(/✗ GET \/sse streams, but refused alerts: forbidden_channel/);
      expect(out).not.toMatch(fallsBack);
    });
  });

  it('does not try SSE on a healthy endpoint or on the gateway\'s own refusal', async () => {
    const healthy = await doctor(gw.ws('/ws'), '--token', token());
    const refused = await doctor(gw.ws('/ws'), '--token', token({}, { secret: 'another-secret-of-at-least-32-bytes!!' }));
    expect([healthy.code, refused.code]).toEqual([0, 1]);
    expect(`${healthy.out}${refused.out}`).not.toContain('/sse');
  });

  it('explains 429 too_many_upgrades and points at TRUSTED_PROXIES', async () => {
    const limited = await startTestGateway({ MAX_UPGRADES_PER_IP_PER_SEC: '1' });
    // Keep this address's one-per-second allowance used up while the doctor runs (plain GETs count too).
    let hammering = true;
    const hammer = (async () => {
      while (hammering) await fetch(limited.http('/api/alerts/subscribe')).then((r) => r.arrayBuffer(), () => undefined);
    })();
    try {
      let result = await doctor(limited.ws('/api/alerts/subscribe'), '--token', token());
      // The doctor's upgrade may land first in a fresh window (a few in a thousand): try once more.
      if (!result.out.includes('HTTP 429')) result = await doctor(limited.ws('/api/alerts/subscribe'), '--token', token());
      expect(result.out).toContain('HTTP 429 too_many_upgrades');
      expect(result.out).toMatch(/too many connection attempts from your address \(MAX_UPGRADES_PER_IP_PER_SEC\); retry after 1 s/);
      expect(result.out).toContain('set TRUSTED_PROXIES');
      expect(result.code).toBe(1);
    } finally {
      hammering = false;
      await hammer;
      await limited.close();
    }
  });

  it('explains 503 keys_unavailable: the identity provider is unreachable', async () => {
    const nowhere = await freePort();
    const oidc = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: `http://127.0.0.1:${nowhere}/jwks.json` });
    try {
      const now = Math.floor(Date.now() / 1000);
      const jwt = signJwt(generateSigningKey('ES256', 'k1'), { sub: 'alice', role: 'authority', iat: now, exp: now + 600 });
      const { code, out } = await doctor(oidc.ws('/api/alerts/subscribe'), '--token', jwt);
      expect(out).toContain('HTTP 503 keys_unavailable');
      expect(out).toContain('cannot reach its identity provider to check tokens: check JWT_JWKS_URL / OIDC_ISSUER_URL');
      expect(out).toContain('retry after 2 s');
      expect(code).toBe(1);
    } finally {
      await oidc.close();
    }
  });

  it('reports a draining server with its Retry-After', async () => {
    const draining = await spawnGateway({ JWT_SECRET: TEST_SECRET, DRAIN_WINDOW_MS: '0', SHUTDOWN_GRACE_MS: '15000' });
    // A client that ignores the close frame keeps the drain (and the 503s) going.
    const deaf = tcpConnect(draining.port, '127.0.0.1');
    deaf.on('error', () => undefined);
    deaf.write(`GET /api/alerts/subscribe?token=${token()} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    await new Promise((resolve) => deaf.once('data', resolve));
    try {
      draining.child.kill('SIGTERM');
      await eventually(() => draining.stdout.some((l) => l.includes('"event":"shutdown"')), 5000, 'the drain');
      const { code, out } = await doctor(`ws://127.0.0.1:${draining.port}/api/alerts/subscribe`, '--token', token());
      expect(out).toContain('HTTP 503 draining');
      expect(out).toMatch(/shutting down; retry after 1 s/);
      expect(code).toBe(1);
    } finally {
      deaf.destroy();
      draining.child.kill('SIGKILL');
    }
  });
});
